"""Pure tests: sbatch script rendering, efficiency arithmetic, accounting parsing, identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from machinery.errors import UserError
from machinery.slurm.accounting import (
    Segment,
    cpu_efficiency,
    is_final,
    parse_duration,
    parse_sacct,
    parse_size,
    stage_efficiency,
    stage_segments,
)
from machinery.slurm.choice import SETTINGS_KEYS, chosen_transport
from machinery.slurm.script import Layout, render_job_script, venv_hash
from machinery.slurm.settings import EnvSettings, SlurmSettings, load_settings
from machinery.slurm.stage import code_files, expand, identity, read_stage, staged_outs

LAYOUT = Layout("/home/u/.mlops", "train-0123456789abcdef", "n0nce")


@pytest.fixture(autouse=True)
def no_ambient_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the repo's slurm.yaml nor the shell's MLOPS_SLURM_* leak into these tests."""
    for key in list(os.environ):
        if key.startswith("MLOPS_SLURM_"):
            monkeypatch.delenv(key)
    empty = tmp_path / "empty-slurm.yaml"
    empty.write_text("{}\n")
    monkeypatch.setenv("MLOPS_SLURM_CONFIG", str(empty))


def settings(**values: object) -> SlurmSettings:
    return SlurmSettings.model_validate(values)


# --- sbatch script ---------------------------------------------------------------------


def test_job_script_carries_every_resource_setting() -> None:
    s = settings(
        job={
            "partition": "gpu",
            "time": "02:00:00",
            "cpus": 8,
            "mem": "16G",
            "gpus": 1,
            "account": "proj42",
            "qos": "high",
            "extra": ["--constraint=a100", "exclusive"],
        },
        env={"kind": "venv", "setup": ["module load cuda/12.2"]},
    )
    text = render_job_script(s, "train", LAYOUT, ["python", "-m", "mymodel.train"], "/v/abc")
    sbatch = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    for opt in (
        "--partition=gpu",
        "--time=02:00:00",
        "--cpus-per-task=8",
        "--mem=16G",
        "--gpus=1",
        "--account=proj42",
        "--qos=high",
        "--constraint=a100",
        "--exclusive",
        f"--output={LAYOUT.log}",
        f"--chdir={LAYOUT.run_dir}",
    ):
        assert f"#SBATCH {opt}" in sbatch
    body = text.splitlines()
    # Setup lines run before the venv is activated and the command starts.
    assert body.index("module load cuda/12.2") < body.index("source /v/abc/bin/activate")
    assert "python -m mymodel.train" in body[body.index("source /v/abc/bin/activate") :]
    # Every #SBATCH line precedes the first command, or sbatch ignores it.
    first_cmd = next(i for i, ln in enumerate(body[1:], 1) if not ln.startswith("#"))
    assert all(i < first_cmd for i, ln in enumerate(body) if ln.startswith("#SBATCH"))


def test_empty_settings_leave_the_cluster_defaults() -> None:
    text = render_job_script(settings(), "train", LAYOUT, ["true"], None)
    for opt in ("--partition", "--mem", "--gpus", "--account", "--qos"):
        assert opt not in text


def test_apptainer_script_runs_the_command_in_the_image(tmp_path: Path) -> None:
    s = settings(env={"kind": "apptainer", "image": "/img/train.sif", "apptainer_args": ["--nv"]})
    cmd = ["python", "-m", "mymodel.train", "--name", "it's"]
    text = render_job_script(s, "train", LAYOUT, cmd, None)
    assert "activate" not in text
    script = tmp_path / "job.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # Run it with a stand-in `apptainer` that records its argv: the real one is not installable.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "apptainer"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGV_OUT"\n')
    stub.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    text = text.replace(LAYOUT.run_dir, str(run_dir)).replace("#!/bin/bash -l", "#!/bin/bash")
    script.write_text(text)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_OUT": str(tmp_path / "a")}
    subprocess.run(["bash", str(script)], env=env, check=True)
    argv = (tmp_path / "a").read_text().splitlines()
    assert argv[0] == "exec" and "--nv" in argv and "--cleanenv" in argv
    image = argv.index("/img/train.sif")
    assert argv[image + 1 :] == cmd
    assert argv[argv.index("--pwd") + 1] == str(run_dir)


def test_venv_is_keyed_by_the_lock_file() -> None:
    env = EnvSettings()
    assert venv_hash(env, b"numpy==2.0\n") == venv_hash(env, b"numpy==2.0\n")
    assert venv_hash(env, b"numpy==2.0\n") != venv_hash(env, b"numpy==2.1\n")
    assert venv_hash(env, b"x") != venv_hash(EnvSettings(python="python3.12"), b"x")


# --- efficiency and accounting -----------------------------------------------------------


def test_cpu_efficiency_is_cpu_time_over_allocated_capacity() -> None:
    assert cpu_efficiency(30.0, 60.0, 1) == pytest.approx(0.5)
    assert cpu_efficiency(60.0, 60.0, 4) == pytest.approx(0.25)
    assert cpu_efficiency(5.0, 0.0, 2) is None


def test_stage_efficiency_weights_segments_by_capacity_and_time() -> None:
    # 4 CPUs fully used for 10 s, then 4 CPUs idle-ish (25 %) for 30 s.
    segments = [Segment(4, 1.0, 10), Segment(4, 0.25, 30)]
    assert stage_efficiency(segments) == pytest.approx((40 + 30) / 160)
    # A big idle allocation drags E down more than a small busy one lifts it.
    assert stage_efficiency([Segment(1, 1.0, 10), Segment(8, 0.0, 10)]) == pytest.approx(1 / 9)
    assert stage_efficiency([]) is None


def test_every_offload_phase_before_the_run_counts_as_idle_capacity() -> None:
    # A container image converted and staged for 20 s is time the allocation's user waited
    # for, like a venv build: it lowers E, it is not left out.
    timings = {"image": 20.0, "stage_in": 5.0, "environment": 3.0, "queue_wait": 2.0}
    segments = stage_segments(2, 1.0, 10.0, timings)
    assert sum(s.dt for s in segments) == pytest.approx(40.0)
    assert stage_efficiency(segments) == pytest.approx(10 / 40)


@pytest.mark.parametrize(
    "text, seconds",
    [("00:00.011", 0.011), ("01:02", 62), ("01:00:05", 3605), ("2-00:00:01", 172801), ("", None)],
)
def test_slurm_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_slurm_sizes() -> None:
    assert parse_size("4344K") == 4344 * 1024
    assert parse_size("1.5G") == int(1.5 * (1 << 30))
    assert parse_size("") is None


SACCT = """\
7|COMPLETED|0:0|None|00:00:10|00:15.500|2||vm|debug|2026-01-01T10:00:00|2026-01-01T10:00:03|2026-01-01T10:00:13|30|billing=2,cpu=2,gres/gpu=1,node=1|
7.batch|COMPLETED|0:0||00:00:10|00:15.500|2|204800K|vm||2026-01-01T10:00:03|2026-01-01T10:00:03|2026-01-01T10:00:13||cpu=2,mem=0,node=1|cpu=00:00:15,gres/gpuutil=63,mem=204800K
7.extern|COMPLETED|0:0||00:00:10|00:00:00|2|1024K|vm||2026-01-01T10:00:03|2026-01-01T10:00:03|2026-01-01T10:00:13||cpu=2,mem=0,node=1|
"""


def test_sacct_record_has_the_job_figures() -> None:
    rec = parse_sacct(SACCT, "7")
    assert rec is not None and is_final(rec)
    assert rec.base_state == "COMPLETED" and rec.exit_code == 0 and rec.node == "vm"
    assert rec.queue_wait_s == 3 and rec.elapsed_s == 10 and rec.alloc_cpus == 2
    assert rec.total_cpu_s == pytest.approx(15.5)
    assert rec.max_rss_bytes == 204800 * 1024  # the biggest step, not the job row
    assert rec.time_limit_s == 1800
    assert rec.gpus == 1 and rec.gpu_utilization == pytest.approx(0.63)


def test_sacct_record_is_not_final_until_the_steps_are_accounted() -> None:
    running = SACCT.splitlines()[0].replace("COMPLETED", "RUNNING")
    assert not is_final(parse_sacct(running, "7"))
    no_steps = SACCT.splitlines()[0]  # COMPLETED, 10 s, but the batch step is not in yet
    assert not is_final(parse_sacct(no_steps, "7"))
    # A job too short for one memory sample still ends: its batch step row is what counts.
    no_rss = "\n".join(SACCT.splitlines()[:2]).replace("|204800K|", "||")
    rec = parse_sacct(no_rss, "7")
    assert rec is not None and is_final(rec) and rec.max_rss_bytes is None

    assert parse_sacct("", "7") is None
    # Cancelled while pending: it never started, so no batch step will ever come.
    cancelled = (
        no_steps.replace("COMPLETED", "CANCELLED by 1001")
        .replace("00:00:10", "00:00:00")
        .replace("2026-01-01T10:00:03", "Unknown")
    )
    rec = parse_sacct(cancelled, "7")
    assert rec is not None and is_final(rec) and rec.base_state == "CANCELLED"


# --- stage and identity ------------------------------------------------------------------


def _project(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src/train.py").write_text("print('train')\n")
    (root / "data").mkdir()
    (root / "data/in.txt").write_text("1\n")
    (root / "params.yaml").write_text(yaml.safe_dump({"train": {"C": 1}, "other": {"x": 1}}))
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {
                        "cmd": "mlops offload train -- python src/train.py",
                        "deps": ["data", "src/train.py"],
                        "params": ["train"],
                        "outs": ["models/m.bin", {"reports/slurm/train.json": {"cache": False}}],
                        "metrics": [{"eval/m.json": {"cache": False}}],
                    }
                }
            }
        )
    )
    (root / ".gitignore").write_text("/data/\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


def _identity(root: Path) -> str:
    stage = read_stage("train", root / "dvc.yaml")
    files = sorted(set(code_files(root)) | set(expand(root, stage.deps)))
    return identity(root, stage, ["python", "src/train.py"], files)


def test_stage_reads_deps_outs_and_params(tmp_path: Path) -> None:
    _project(tmp_path)
    stage = read_stage("train", tmp_path / "dvc.yaml")
    assert stage.deps == ["data", "src/train.py"]
    assert stage.outs == ["models/m.bin", "reports/slurm/train.json", "eval/m.json"]
    assert staged_outs(stage) == ["models/m.bin", "eval/m.json"]  # the report is written here
    assert stage.params == {"params.yaml": ["train"]}
    with pytest.raises(UserError, match="no stage 'nope'"):
        read_stage("nope", tmp_path / "dvc.yaml")


def test_identity_follows_deps_params_and_code_only(tmp_path: Path) -> None:
    _project(tmp_path)
    base = _identity(tmp_path)
    assert base.startswith("train-") and base == _identity(tmp_path)

    # Things the job does not depend on leave it alone: a lock file DVC rewrites, the outs.
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/m.bin").write_bytes(b"old model")
    assert _identity(tmp_path) == base

    changes = [
        lambda: (tmp_path / "data/in.txt").write_text("2\n"),  # an ignored data dep
        lambda: (tmp_path / "src/train.py").write_text("print('v2')\n"),  # code
        lambda: (tmp_path / "src/new_module.py").write_text(""),  # a new, untracked file
        lambda: (tmp_path / "params.yaml").write_text(
            yaml.safe_dump({"train": {"C": 2}, "other": {"x": 1}})
        ),
    ]
    seen = {base}
    for change in changes:
        change()
        now = _identity(tmp_path)
        assert now not in seen
        seen.add(now)


def test_missing_dep_is_a_user_error(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "data/in.txt").unlink()
    (tmp_path / "data").rmdir()
    with pytest.raises(UserError, match="data: dependency missing"):
        _identity(tmp_path)


# --- settings ----------------------------------------------------------------------------


def test_settings_come_from_the_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(yaml.safe_dump({"transport": "local", "job": {"cpus": 4, "partition": "a"}}))
    monkeypatch.setenv("MLOPS_SLURM_CONFIG", str(cfg))
    s = load_settings()
    assert (s.transport, s.job.cpus, s.job.partition) == ("local", 4, "a")
    monkeypatch.setenv("MLOPS_SLURM_TRANSPORT", "ssh")
    monkeypatch.setenv("MLOPS_SLURM_SSH_HOST", "login.example.org")
    monkeypatch.setenv("MLOPS_SLURM_JOB__PARTITION", "b")
    s = load_settings()
    assert (s.transport, s.ssh_host, s.job.cpus, s.job.partition) == (
        "ssh",
        "login.example.org",
        4,
        "b",
    )


def test_bad_settings_are_one_line_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(yaml.safe_dump({"job": {"cpus": 0}}))
    monkeypatch.setenv("MLOPS_SLURM_CONFIG", str(cfg))
    with pytest.raises(UserError, match=r"job\.cpus"):
        load_settings()
    monkeypatch.setenv("MLOPS_SLURM_TRANSPORT", "carrier-pigeon")
    cfg.write_text("{}\n")
    with pytest.raises(UserError, match="transport"):
        load_settings()


def test_the_quick_transport_choice_agrees_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transport ``none`` skips the full settings; it must pick what they would pick, and leave
    every doubtful case (a typo'd key, a bad value) to them."""
    assert SETTINGS_KEYS == set(SlurmSettings.model_fields)
    for key in [k for k in os.environ if k.upper().startswith("MLOPS_SLURM_")]:
        monkeypatch.delenv(key)
    cfg = tmp_path / "slurm.yaml"
    monkeypatch.setenv("MLOPS_SLURM_CONFIG", str(cfg))
    cases: list[tuple[object, dict[str, str], str | None]] = [
        ({}, {}, "none"),
        (None, {}, "none"),  # an empty file
        ({"transport": "ssh", "job": {"cpus": 2}}, {}, "ssh"),
        ({"transport": "ssh"}, {"MLOPS_SLURM_TRANSPORT": "none"}, "none"),  # env wins
        ({"transport": "ssh"}, {"mlops_slurm_transport": "none"}, "none"),  # any case
        ({"transprot": "ssh"}, {}, None),  # a typo: the settings refuse it
        ({"transport": "carrier-pigeon"}, {}, None),
        ({}, {"MLOPS_SLURM_TRANSPORT": ""}, None),
        (["transport"], {}, None),
    ]
    for data, env, expected in cases:
        cfg.write_text(yaml.safe_dump(data) if data is not None else "")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert chosen_transport() == expected, (data, env)
        if expected is None:
            with pytest.raises(UserError):
                load_settings()
        else:
            assert load_settings().transport == expected, (data, env)
        for key in env:
            monkeypatch.delenv(key)
    cfg.write_text("transport: [\n")
    assert chosen_transport() is None
    assert chosen_transport("local") == "local"  # the option wins over a broken file
    cfg.unlink()
    assert chosen_transport() is None  # named by MLOPS_SLURM_CONFIG but missing
    with pytest.raises(UserError, match="file not found"):
        load_settings()


def test_a_typo_in_slurm_yaml_never_trains_here_silently(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "slurm.yaml").write_text("transprot: ssh\n")
    mlops = Path(sys.executable).parent / "mlops"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    proc = subprocess.run(
        [str(mlops), "offload", "train", "--", "true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "transprot" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "reports/slurm/train.json").exists()


def test_offload_cli_errors_are_one_line(tmp_path: Path) -> None:
    _project(tmp_path)
    mlops = Path(sys.executable).parent / "mlops"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    proc = subprocess.run(
        [str(mlops), "offload", "nosuch", "--", "true"],
        cwd=tmp_path,
        env={**env, "MLOPS_SLURM_TRANSPORT": "ssh"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: dvc.yaml: no stage 'nosuch' (stages: train)"
    ]
