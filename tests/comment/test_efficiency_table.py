"""The PR comment's efficiency section (the source paper's Table 1, formula (1), the advice),
read back through the GFM renderer cell by cell. Fixture records, not the example's."""

from __future__ import annotations

import pytest
import yaml

from tests.support.markdown import table_with_header, tables
from tests.support.report_project import SLURM_RECORD, Mlops, ReportProject

GPU_TRAIN = {
    **SLURM_RECORD,
    "run_time_s": 100.0,
    "time_limit_s": 3600.0,
    "alloc_cpus": 4,
    "total_cpu_s": 200.0,
    "cpu_efficiency": 0.5,
    "max_rss_bytes": 600 << 20,
    "alloc_mem_bytes": 4 << 30,
    "gpus": 1,
    "gpu_utilization": 0.6,
}


def measured(stage: str, wall: float, cpu: float, cpus: int) -> dict[str, object]:
    return {
        "stage": stage,
        "measured_at": "2026-01-01T00:00:00Z",
        "wall_s": wall,
        "cpu_s": cpu,
        "cpus": cpus,
        "max_rss_bytes": 50 << 20,
        "exit_code": 0,
    }


@pytest.fixture
def with_figures(project: ReportProject) -> ReportProject:
    project.write_json("reports/slurm/train.json", GPU_TRAIN)
    project.write_json("reports/stages/data.json", measured("data", 10.0, 5.0, 2))
    project.write_json("reports/stages/evaluate.json", measured("evaluate", 20.0, 10.0, 2))
    (project.path / "slurm.yaml").write_text(yaml.safe_dump({"efficiency": {"gpu_weight": 40}}))
    return project


@pytest.mark.integration
def test_the_comment_shows_table_1_for_every_stage_and_formula_1(
    with_figures: ReportProject, mlops: Mlops
) -> None:
    out = mlops("comment", "--dry-run")
    assert out.exit_code == 0, out.stdout
    rows = table_with_header(out.stdout, "stage", "where", "E_i")
    assert rows == [
        ["stage", "where", "E_i", "E_i^cpu", "p^cpu", "E_i^gpu", "p^gpu", "time"],
        ["data", "here", "0.25", "0.25", "2", "–", "0", "10.0 s"],
        ["evaluate", "here", "0.25", "0.25", "2", "–", "0", "20.0 s"],
        # (4·0.5 + 40·0.6) ÷ 44 = 0.5909
        ["train", "job 4711", "0.59", "0.50", "4", "0.60", "40", "100.0 s"],
    ]
    # (2·0.25·10 + 4·0.5·100 + 40·0.6·100 + 2·0.25·20) ÷ (2·10 + 44·100 + 2·20) = 2615 ÷ 4460
    assert "**Pipeline E = 0.59 (formula (1): E = Σ p·c·Δt ÷ Σ p·Δt; p = 1 per CPU core, 40" in (
        out.stdout
    )
    advice = [ln for ln in out.stdout.splitlines() if ln.startswith("- `train`: ")]
    assert advice == [
        "- `train`: CPU efficiency 50 % on 4 cores: about 2.0 kept busy (serial code on parallel"
        " cores?); in slurm.yaml set `cpus: 2` under `job:`",
        "- `train`: 4096 MiB asked, MaxRSS 600 MiB; in slurm.yaml set `mem: 900M` under `job:`",
        "- `train`: ran 100 s, under 600 s: cheaper on an ordinary runner; in slurm.yaml set"
        " `transport: none`",
        "- `train`: time limit 60 min for a 100 s run (a long limit waits longer for a backfill"
        ' slot); in slurm.yaml set `time: "00:04:00"` under `job:`',
    ]


@pytest.mark.integration
def test_the_report_stage_shows_the_cluster_jobs_only_and_gpu_utilisation_not_reported(
    with_figures: ReportProject, mlops: Mlops
) -> None:
    """report.md is a DVC output: run-dependent local figures stay out of it."""
    with_figures.write_json("reports/slurm/train.json", {**GPU_TRAIN, "gpu_utilization": None})
    out = mlops("report")
    assert out.exit_code == 0, out.stdout
    md = (with_figures.path / "reports/report.md").read_text()
    rows = table_with_header(md, "stage", "where", "E_i")
    assert rows[1:] == [["train", "job 4711", "–", "0.50", "4", "not reported", "40", "100.0 s"]]
    assert "left out, a figure unknown: train" in md
    fields = dict(r for t in tables(md) if t[0] == ["field", "value"] for r in t[1:])
    assert fields["GPUs"] == "1" and fields["GPU utilisation"] == "not reported"
    assert fields["allocated memory"] == "4096.0 MiB"
