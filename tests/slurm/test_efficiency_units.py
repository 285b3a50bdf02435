"""The arithmetic of formula (1), the advice rules and ``mlops measure``, without a cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from machinery.efficiency.advice import advise, suggested_mem, suggested_time
from machinery.efficiency.settings import EfficiencySettings
from machinery.efficiency.table import StageRow, pipeline_efficiency
from machinery.slurm.accounting import SACCT_FIELDS, parse_sacct

MLOPS = str(Path(sys.executable).parent / "mlops")
PAPER = EfficiencySettings(cpu_weight=1.0, gpu_weight=40.0)


def test_train_row_of_the_paper_recomputes_to_0_57() -> None:
    """Table 1's train row: p^cpu = 4 (4 cores × 1), p^gpu = 40 (1 GPU × 40), E = 0.57. The
    paper's own E^cpu and E^gpu were not available here: these are values of ours whose E by
    formula (1) is the paper's, (4·0.35 + 40·0.592) ÷ 44 = 25.08 ÷ 44 = 0.570."""
    row = StageRow("train", "job 1", time_s=3600.0, cpus=4, cpu_eff=0.35, gpus=1, gpu_eff=0.592)
    assert row.p_cpu(PAPER) == 4 and row.p_gpu(PAPER) == 40
    assert row.efficiency(PAPER) == pytest.approx(0.57, abs=0.005)
    assert f"{row.efficiency(PAPER):.2f}" == "0.57"


def test_the_pipeline_e_weighs_each_stage_by_its_capacity_and_time() -> None:
    rows = [
        StageRow("data", "here", time_s=10.0, cpus=2, cpu_eff=0.25),
        StageRow("train", "job 1", time_s=100.0, cpus=4, cpu_eff=0.5, gpus=1, gpu_eff=0.6),
    ]
    value, left_out = pipeline_efficiency(rows, PAPER)
    assert value == pytest.approx((2 * 0.25 * 10 + 4 * 0.5 * 100 + 40 * 0.6 * 100) / 4420)
    assert left_out == []


def test_an_unreported_gpu_figure_leaves_the_stage_out_never_counts_it_as_zero() -> None:
    rows = [
        StageRow("data", "here", time_s=10.0, cpus=2, cpu_eff=0.25),
        StageRow("train", "job 1", time_s=100.0, cpus=4, cpu_eff=0.5, gpus=1, gpu_eff=None),
    ]
    assert rows[1].efficiency(PAPER) is None
    value, left_out = pipeline_efficiency(rows, PAPER)
    assert value == pytest.approx(0.25) and left_out == ["train"]


def _record(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "source": "sacct",
        "run_time_s": 1200.0,
        "queue_wait_s": 5.0,
        "time_limit_s": 1800.0,
        "alloc_cpus": 2,
        "total_cpu_s": 2300.0,
        "cpu_efficiency": 2300.0 / 2400.0,
        "max_rss_bytes": 500 << 20,
        "alloc_mem_bytes": 1 << 30,
        "gpus": 0,
        "gpu_utilization": None,
    }
    return {**base, **changes}


def test_a_well_sized_job_gets_no_flag_and_unknown_figures_raise_none() -> None:
    s = EfficiencySettings()
    assert advise(_record(), s) == []
    unknown = {k: None for k in _record() if k != "source"}
    assert advise({"source": "sacct", **unknown}, s) == []
    assert advise(_record(source="none", run_time_s=1.0), s) == []  # ran here: no job to size


@pytest.mark.parametrize(
    "changes, code, suggestion",
    [
        ({"total_cpu_s": 1190.0, "cpu_efficiency": 0.496}, "low-cpu", "cpus: 1"),
        ({"alloc_mem_bytes": 4 << 30}, "mem-over-ask", "mem: 800M"),
        ({"gpus": 2, "gpu_utilization": 0.0}, "gpu-idle", "gpus: 0"),
        ({"run_time_s": 30.0, "time_limit_s": 60.0}, "short-run", "transport: none"),
        ({"queue_wait_s": 1500.0}, "short-run", "transport: none"),
        ({"time_limit_s": 86400.0}, "time-over-ask", 'time: "00:40:00"'),
    ],
)
def test_each_flag_names_the_slurm_yaml_change(
    changes: dict[str, object], code: str, suggestion: str
) -> None:
    flags = advise(_record(**changes), EfficiencySettings())
    assert [(f.code, f.suggestion()) for f in flags] == [(code, suggestion)]
    assert flags[0].section == ("" if code == "short-run" else "job")


def test_thresholds_are_settings() -> None:
    short = _record(run_time_s=30.0, time_limit_s=60.0)
    assert [f.code for f in advise(short, EfficiencySettings(short_run_s=10))] == []
    assert suggested_mem(500 << 20, 1.5) == "800M" and suggested_mem(1 << 20, 1.5) == "100M"
    assert suggested_time(0.0, 2.0) == '"00:01:00"' and suggested_time(3600, 2) == '"02:00:00"'


def _sacct(*rows: dict[str, str]) -> str:
    return "\n".join("|".join(r.get(f, "") for f in SACCT_FIELDS) for r in rows) + "\n"


def test_sacct_gpus_memory_and_gpu_utilisation() -> None:
    job = {"JobIDRaw": "7", "State": "COMPLETED", "ExitCode": "0:0", "Elapsed": "00:00:10"}
    batch = {**job, "JobIDRaw": "7.batch"}
    text = _sacct(
        {**job, "AllocCPUS": "1", "AllocTRES": "billing=1,cpu=1,gres/gpu=2,node=1", "ReqMem": "2G"},
        {**batch, "TRESUsageInAve": "cpu=00:00:01,gres/gpuutil=37,mem=3M"},
    )
    rec = parse_sacct(text, "7")
    assert rec is not None
    assert (rec.gpus, rec.gpu_utilization, rec.alloc_mem_bytes) == (2, 0.37, 2 << 30)
    # memory consumable: AllocTRES mem= wins; no gpuutil (no NVML): unknown, not 0
    text = _sacct({**job, "AllocTRES": "cpu=1,mem=600M,gres/gpu=1", "ReqMem": "2G"}, batch)
    rec = parse_sacct(text, "7")
    assert rec is not None
    assert (rec.gpus, rec.gpu_utilization, rec.alloc_mem_bytes) == (1, None, 600 << 20)


def test_measure_records_a_local_stage_outside_dvc_outputs(tmp_path: Path) -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass"
    done = subprocess.run(
        [MLOPS, "measure", "data", "--", sys.executable, "-c", burn], cwd=tmp_path
    )
    assert done.returncode == 0
    m = json.loads((tmp_path / "reports/stages/data.json").read_text())
    assert m["stage"] == "data" and m["exit_code"] == 0
    assert 0.3 <= m["cpu_s"] <= m["wall_s"] + 0.1 and m["max_rss_bytes"] > 1 << 20
    failed = subprocess.run(
        [MLOPS, "measure", "evaluate", "--", "sh", "-c", "exit 3"], cwd=tmp_path
    )
    assert failed.returncode == 3
    assert json.loads((tmp_path / "reports/stages/evaluate.json").read_text())["exit_code"] == 3
    missing = subprocess.run(
        [MLOPS, "measure", "x", "--", "no-such-cmd"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == ["error: no-such-cmd: command not found"]
