"""Real git repositories for the CI tests: a bare ``origin`` and clones of it, on local paths."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IDENTITY = {
    "GIT_AUTHOR_NAME": "dev",
    "GIT_AUTHOR_EMAIL": "dev@example.invalid",
    "GIT_COMMITTER_NAME": "dev",
    "GIT_COMMITTER_EMAIL": "dev@example.invalid",
}


def git_env(**extra: str) -> dict[str, str]:
    # Nothing from the developer's or a CI job's environment may steer these tests' git or CI.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "CI_", "GITLAB_", "GITHUB_", "MLOPS_"))
    }
    return {**env, **IDENTITY, **extra}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env or git_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Origin:
    """A bare repository standing in for the forge's copy of the project."""

    path: Path

    def clone(self, dest: Path) -> Path:
        git(dest.parent, "clone", "-q", str(self.path), dest.name)
        return dest

    def head(self, branch: str = "main") -> str:
        return git(self.path, "rev-parse", f"refs/heads/{branch}")

    def show(self, path: str, rev: str = "main") -> str:
        return git(self.path, "show", f"{rev}:{path}")

    def log(self, rev: str = "main") -> list[str]:
        return git(self.path, "log", "--format=%s", rev).splitlines()

    def tags(self) -> list[str]:
        return git(self.path, "tag", "--list").split()


def make_origin(tmp: Path, files: dict[str, str] | None = None) -> Origin:
    """``origin.git`` with one commit on main holding the repository's ``k8s/`` and ``files``."""
    seed = tmp / "seed"
    shutil.copytree(REPO / "k8s", seed / "k8s")
    for rel, text in (files or {}).items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    bare = tmp / "origin.git"
    git(tmp, "clone", "-q", "--bare", str(seed), bare.name)
    shutil.rmtree(seed)
    return Origin(bare)


def commit_file(clone: Path, rel: str, text: str, message: str) -> str:
    (clone / rel).parent.mkdir(parents=True, exist_ok=True)
    (clone / rel).write_text(text)
    git(clone, "add", rel)
    git(clone, "commit", "-q", "-m", message)
    return git(clone, "rev-parse", "HEAD")
