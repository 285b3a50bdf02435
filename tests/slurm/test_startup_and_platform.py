"""Start-up stays light (heavy libraries load only where used) and transport ``none`` runs on
macOS as on Linux (no ``sched_getaffinity``; ``ru_maxrss`` in bytes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from machinery.slurm import runlocal
from tests.slurm.conftest import make_project

HEAVY = ("boto3", "botocore", "paramiko", "jinja2", "dvc", "machinery.registry", "machinery.report")


def _imported(argv: list[str], cwd: Path | None = None) -> set[str]:
    """Modules a ``python -X importtime`` run imported (its stderr lists each one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_mlops_help_imports_no_heavy_library() -> None:
    modules = _imported(["-m", "machinery.cli", "--help"])
    assert {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY} == set()


def test_offload_with_transport_none_imports_no_heavy_library(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "mkdir -p out && touch out/x")
    argv = ["-m", "machinery.cli", "offload", "--transport", "none", project.stage, "--"]
    modules = _imported([*argv, *project.cmd], cwd=project.path)
    assert "machinery.slurm.runlocal" in modules  # it did run the stage
    assert {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY} == set()
    assert not {"machinery.slurm.transport", "machinery.slurm.offload"} & modules
    # The cluster settings are not read to train here (pydantic-settings: ~80 ms of ~0.2 s).
    assert "pydantic_settings" not in modules and "machinery.slurm.settings" not in modules
    record = json.loads((project.path / f"reports/slurm/{project.stage}.json").read_text())
    assert record["state"] == "COMPLETED"


def test_the_registry_imports_boto3_only_for_an_s3_registry() -> None:
    code = (
        "import sys\n"
        "from machinery.registry import Registry\n"
        "Registry.from_url(sys.argv[1])\n"
        "print('boto3' in sys.modules)\n"
    )
    for url, loaded in (("/tmp/mlops-no-such-registry", "False"), ("s3://bucket/prefix", "True")):
        out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True)
        assert out.stdout.strip() == loaded, (url, out.stderr)


def test_every_command_is_listed_and_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from machinery.cli import COMMANDS, app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
        sub = CliRunner().invoke(app, [name, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output, (name, sub.output)


def test_cpus_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert runlocal.usable_cpus() == (os.cpu_count() or 1)


def test_maxrss_units_per_platform() -> None:
    assert runlocal.maxrss_bytes(1000, "darwin") == 1000
    assert runlocal.maxrss_bytes(1000, "linux") == 1000 * 1024


def test_run_here_on_macos(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The whole transport-none path with macOS's platform facts (the figures go to the log)."""

    def figures() -> tuple[int, float]:
        line = capfd.readouterr().err.strip().splitlines()[-1]
        found = re.search(r"on (\d+) CPUs.*max RSS ([\d.]+) MiB", line)
        assert found, line
        return int(found[1]), float(found[2])

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    cmd = [sys.executable, "-c", "b = bytearray(40 << 20)"]
    report = runlocal.run_here("work", cmd, tmp_path, "work-0")
    assert report.state == "COMPLETED"
    cpus, as_darwin = figures()
    assert cpus == (os.cpu_count() or 1)
    monkeypatch.setattr(sys, "platform", "linux")
    runlocal.run_here("work", cmd, tmp_path, "work-0")
    as_linux = figures()[1]
    # The child's peak counts the forked test process too (before exec), so compare the two
    # readings: Linux's KiB taken as macOS's bytes read 1024 times smaller.
    assert as_linux > 40 and as_darwin < as_linux / 500
