"""A throwaway git copy of this repository in which the real ``dvc`` and stages run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Who commits in a test's repository (git refuses to commit without a name and an e-mail).
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def venv_stamp(venv: Path) -> Path:
    """The Makefile's stamp of a venv synced with this repository's locks (named after their
    content): ``make -o STAMP`` never re-syncs a venv a test shares."""
    locks = (REPO / "requirements-dev.lock").read_bytes() + (REPO / "pyproject.toml").read_bytes()
    return venv / f".synced-{hashlib.sha256(locks).hexdigest()[:16]}"


def repo_files() -> list[str]:
    """Tracked files plus new ones git does not ignore: the workspace as a user has it."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@dataclass
class Workspace:
    path: Path

    @classmethod
    def clone(cls, dest: Path) -> Workspace:
        """Copy the repository's files into ``dest`` and make it a one-commit git repo."""
        for rel in repo_files():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
        ws = cls(dest)
        ws.git("init", "-q", "-b", "main")
        ws.git("add", "-A")
        ws.git("commit", "-q", "-m", "initial")
        return ws

    def copy_to(self, dest: Path) -> Workspace:
        shutil.copytree(self.path, dest, symlinks=True)
        return Workspace(dest)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # This copy's code, not the editable install's, is what the stages import.
        env["PYTHONPATH"] = os.pathsep.join([str(self.path / "src"), str(self.path)])
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
        env.update(GIT_IDENTITY)
        return env

    def run(
        self, *cmd: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        merged = self.env | (env or {})
        proc = subprocess.run(cmd, cwd=self.path, env=merged, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("git", *args)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("dvc", *args, check=check)

    def stages_run(self, output: str) -> list[str]:
        """Names of the stages ``dvc repro`` actually executed, in order."""
        return [
            line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")
        ]

    def set_param(self, dotted: str, value: object) -> None:
        params_path = self.path / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    def stages(self) -> dict[str, dict[str, Any]]:
        """``dvc.yaml``'s stages as written (whatever example the repository holds)."""
        stages: dict[str, dict[str, Any]] = yaml.safe_load((self.path / "dvc.yaml").read_text())[
            "stages"
        ]
        return stages


_REPRODUCED: dict[str, Workspace] = {}


def reproduced_once(root: Path) -> Workspace:
    """One ``dvc repro`` of this repository per test session, shared by every test directory
    that asks (the template's pipeline tests and the example's own)."""
    if "ws" not in _REPRODUCED:
        ws = Workspace.clone(root / "ws")
        ws.dvc("repro")
        _REPRODUCED["ws"] = ws
    return _REPRODUCED["ws"]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user's mistake: non-zero, no traceback, one line on stderr naming the cause."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
