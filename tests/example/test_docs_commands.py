"""Every command in README.md's and docs/pipeline.md's ```bash/```console blocks works as
written, from a fresh shell that has only run the documented activation line.

Each command is either run here (in a copy of the reproduced repository) or skipped with the
reason below; a command in those pages that is in neither list fails the test, so a new one
gets decided on. The pages show the example's params (``train.estimator``), so this lives with
the example's tests: a fork replaces it along with its docs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workspace import REPO, Workspace, venv_stamp

PAGES = ["README.md", "docs/pipeline.md"]
ACTIVATE = "source .venv/bin/activate"
RUN = [
    ACTIVATE,
    "make example-image",
    "dvc exp run -S train.estimator=logreg -S train.logreg.C=0.5",
    "dvc exp show",
    "dvc metrics diff main",
    "mlops report --baseline main",
    "mlops comment --dry-run --baseline main",
    "dvc remote add -d s3 s3://my-bucket/dvcstore",
    "dvc remote modify s3 endpointurl https://minio.example.com",
]
SKIP = {
    "make run": "tests/pipeline/test_fresh_clone.py runs it as written, in a fresh clone",
    "make test": "it is this test suite",
}
VENV = Path(sys.executable).parent.parent


def documented_commands() -> list[str]:
    commands = []
    for page in PAGES:
        text = (REPO / page).read_text()
        for block in re.findall(r"```(?:bash|console)\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                command = line.split(" #", 1)[0].strip()
                if command and not command.startswith("#"):
                    commands.append(command)
    return commands


def fresh_shell(ws: Path, command: str) -> subprocess.CompletedProcess[str]:
    """bash without profile or the test's PATH: only the activation line provides the tools."""
    if command.startswith("make "):
        command += f" -o {venv_stamp(Path('.venv'))}"  # never re-sync the venv this test shares
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f"set -e; {ACTIVATE}; {command}"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )


def test_every_documented_command_is_run_or_skipped_for_a_reason() -> None:
    commands = documented_commands()
    assert ACTIVATE in commands, "the activation line is gone from the pages"
    unknown = sorted(set(commands) - set(RUN) - set(SKIP))
    assert not unknown, f"decide: add these to RUN (safe here) or SKIP (with why): {unknown}"
    missing = sorted(set(RUN) - set(commands))
    assert not missing, f"no longer documented, drop from RUN: {missing}"


@pytest.mark.slow
def test_documented_commands_work_as_written(workspace: Workspace) -> None:
    (workspace.path / ".venv").symlink_to(VENV)
    workspace.git("add", "dvc.lock")
    workspace.git("commit", "-q", "--allow-empty", "-m", "results on main")
    bare = fresh_shell(workspace.path, "command -v dvc mlops")
    assert bare.returncode == 0 and str(VENV) in bare.stdout, bare.stderr
    for command in [c for c in documented_commands() if c in RUN and c != ACTIVATE]:
        proc = fresh_shell(workspace.path, command)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert (workspace.path / ".local/example.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Against `main`" in (workspace.path / "reports/report.md").read_text()


def test_without_activation_the_tools_are_not_found(tmp_path: Path) -> None:
    """Why the pages say to activate: a fresh shell has no dvc or mlops of this project."""
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", "command -v mlops"],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert str(VENV) not in proc.stdout
