"""`.pre-commit-config.yaml` on a clean clone: every hook passes on the repository as committed,
and a commit of a badly formatted Python file is refused by black. Local hooks only: the run
has no network (proxies point at a closed port) and pre-commit clones no hook repository."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# As the README says (and `make hooks` runs).
HOOK_TYPES = [
    "--hook-type",
    "pre-commit",
    "--hook-type",
    "pre-push",
    "--hook-type",
    "post-checkout",
]

# Runs the real tools of the dev venv (mypy over the whole tree): tens of seconds.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "VENV")}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, any fetch fails at once
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
            "HTTP_PROXY": closed,
            "HTTPS_PROXY": closed,
            "http_proxy": closed,
            "https_proxy": closed,
            "NO_PROXY": "",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@localhost",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@localhost",
        }
    )
    return env


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    assert not (target / ".venv").exists()  # the hooks find the tools on PATH here
    # The worktree's mypy cache, if any, spares a cold whole-tree check (results do not differ).
    if (REPO / ".mypy_cache").is_dir():
        shutil.copytree(REPO / ".mypy_cache", target / ".mypy_cache")
    return target


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_hooks_pass_on_a_clean_clone_and_refuse_bad_formatting(clone: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    ran = _run(["pre-commit", "run", "--all-files"], clone, env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for hook in ("black", "flake8", "mypy --strict", "DVC pre-commit"):
        assert any(ln.startswith(hook) and ln.endswith("Passed") for ln in ran.stdout.splitlines())

    installed = _run(
        ["pre-commit", "install", *HOOK_TYPES],
        clone,
        env,
    )
    assert installed.returncode == 0, installed.stderr
    head = _run(["git", "rev-parse", "HEAD"], clone, env).stdout
    (clone / "src" / "machinery" / "badly_formatted.py").write_text("x = {  'a':1 }\n")
    _run(["git", "add", "src/machinery/badly_formatted.py"], clone, env)
    commit = _run(["git", "commit", "-m", "a badly formatted file"], clone, env)
    assert commit.returncode != 0
    said = commit.stdout + commit.stderr  # git hands a hook's stdout to stderr
    black = next(ln for ln in said.splitlines() if ln.startswith("black"))
    assert black.endswith("Failed"), said
    assert _run(["git", "rev-parse", "HEAD"], clone, env).stdout == head  # nothing committed

    # Nothing came from a hook repository: pre-commit's store lists no cloned repo.
    db = tmp_path / "pre-commit-home" / "db.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM repos").fetchone() == (0,)
