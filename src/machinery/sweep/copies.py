"""A private copy of the workspace per point, and its result saved as a DVC experiment.

Each point runs in a clone of the workspace's git repository with the workspace's files laid
over it (uncommitted changes included) and the workspace's DVC cache: no two points share
DVC's ``rw.lock``, and the workspace itself is never touched. ``dvc exp save`` in the copy
records the point as an experiment of the workspace's HEAD; its ref is then fetched into the
workspace's git, where ``dvc exp show`` lists it and ``dvc exp apply`` restores it (the
outputs are already in the shared cache).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import yaml

from machinery.errors import UserError

_FETCH_LOCK = threading.Lock()
# The dvc of this venv, also when its bin/ is not on PATH (a CI job calling .venv/bin/mlops).
_BIN = Path(sys.executable).parent
DVC = str(_BIN / "dvc") if (_BIN / "dvc").is_file() else "dvc"
PARAMS_FILE = "params.yaml"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise UserError(f"{' '.join(cmd[:3])}: {last.splitlines()[-1]}")
    return proc.stdout


def workspace_files(root: Path) -> list[str]:
    out = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], root)
    return sorted(n for n in out.split("\0") if n and (root / n).is_file())


def head(root: Path) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise UserError(f"{root}: no commit yet (a sweep's experiments hang off HEAD: commit)")
    return proc.stdout.strip()


def cache_dir(root: Path) -> str:
    """The project's DVC cache: read from ``.dvc/config(.local)``, as ``dvc cache dir`` would
    say, without a DVC start-up (over a second on a loaded runner). A user-wide or system
    config may set it too: then DVC is asked."""
    found: str | None = None
    for name in ("config", "config.local"):  # the later one wins, as in DVC
        path = root / ".dvc" / name
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path)
        except configparser.Error:
            return run([DVC, "cache", "dir"], root).strip()
        if parser.has_option("cache", "dir"):
            value = os.path.expanduser(parser.get("cache", "dir").strip().strip("'\""))
            found = str((path.parent / value).resolve())
    if found is not None:
        return found
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    outside = [Path(xdg) / "dvc" / "config", Path("/etc/xdg/dvc/config")]
    if any(p.is_file() for p in outside):
        return run([DVC, "cache", "dir"], root).strip()
    return str((root / ".dvc" / "cache").resolve())


class Copy:
    """One point's workspace: made by ``make``, dropped by ``remove``."""

    def __init__(self, root: Path, path: Path):
        self.root = root
        self.path = path

    @classmethod
    def make(
        cls,
        root: Path,
        files: list[str],
        extra: list[str],
        params: dict[str, Any],
        cache: str,
        parent: Path,
    ) -> Copy:
        path = Path(tempfile.mkdtemp(prefix="point-", dir=parent))
        run(["git", "clone", "-q", "--shared", "--no-checkout", str(root), str(path)], parent)
        # The workspace's own commit, also on a detached HEAD (CI): each experiment's baseline.
        run(["git", "checkout", "-q", "--detach", head(root)], path)
        for rel in [*files, *extra]:
            src, dest = root / rel, path / rel
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
            elif src.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest, follow_symlinks=False)
        (path / PARAMS_FILE).write_text(yaml.safe_dump(params, sort_keys=False))
        # What `dvc cache dir --local` writes, without another DVC start-up per point.
        local = path / ".dvc" / "config.local"
        local.parent.mkdir(exist_ok=True)
        local.write_text(f"[cache]\n    dir = {cache}\n")
        return cls(root, path)

    def save(
        self, name: str, stages: list[str], dvc: Callable[[list[str]], None] | None = None
    ) -> str:
        """``dvc exp save`` of the swept ``stages`` here (the others, e.g. a report stage that
        did not run for this point, keep their dvc.lock entries), then the ref into the
        workspace; returns the ref. ``dvc`` runs the command (a long-lived worker's), else a
        ``dvc`` process of its own."""
        extra: list[str] = []
        if not run(["git", "ls-files", "dvc.lock"], self.path).strip():
            # A project whose dvc.lock is not committed yet: DVC only takes an untracked lock
            # file that existed before its commit step, and here it is made by that step.
            extra = ["--include-untracked", "dvc.lock"]
        argv = ["exp", "save", "--force", "-n", name, *extra, *stages]
        if dvc is not None:
            dvc(argv)
        else:
            run([DVC, *argv], self.path, env=git_env())
        refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], self.path)
        ref = next((r for r in refs.split() if r.endswith("/" + name)), "")
        if not ref:
            raise UserError(f"dvc exp save made no experiment named {name}")
        with _FETCH_LOCK:  # one git fetch into the workspace at a time
            run(["git", "fetch", "-q", "-f", str(self.path), f"+{ref}:{ref}"], self.root)
        return ref

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def tool_env() -> dict[str, str]:
    """This venv's tools first on PATH: a stage's ``mlops offload`` and ``dvc`` are these."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(_BIN), env.get("PATH", "")])
    return env


def git_env() -> dict[str, str]:
    """An experiment commit needs an author even on a runner without git config."""
    env = tool_env()
    env.setdefault("GIT_AUTHOR_NAME", "mlops sweep")
    env.setdefault("GIT_AUTHOR_EMAIL", "mlops-sweep@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def read_metrics(path: Path, files: list[str]) -> dict[str, Any]:
    """The metrics files of one point, flattened as DVC names them (``a.b``)."""
    out: dict[str, Any] = {}

    def flat(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[prefix] = value

    for rel in files:
        file = path / rel
        if file.is_file():
            flat("", yaml.safe_load(file.read_text()) or {})
    return out
