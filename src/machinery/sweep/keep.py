"""Keep a sweep's experiments beyond the CI job that ran it: ``dvc exp push`` to the project's
git remote (``mlops sweep --push``, docs/sweeps.md "What CI keeps").

In CI the experiments live in the job's throw-away clone; without this push the comment's
advice (``dvc exp apply NAME``) could not be followed by anyone. The push goes where the other
CI pushes go (``machinery.ci.git.push_target``: ``origin``, ``MLOPS_GIT_PUSH_URL``, or the
forge's project URL with ``MLOPS_GIT_TOKEN``). A failed push is recorded, not raised: the
sweep's table is still worth its comment, which then says the experiments were not kept.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from machinery.ci.git import TOKEN_ENV, push_target
from machinery.errors import UserError
from machinery.sweep.copies import DVC
from machinery.sweep.record import SweepRecord

# What the reviewer types: the remote as a clone of the project names it.
REVIEWER_REMOTE = "origin"
PUSH_TIMEOUT_S = 600.0


@dataclass
class Kept:
    """Where a sweep's experiments went; ``error`` set when they did not."""

    remote: str  # as a clone of the project names it: never a URL (a token may be in it)
    refs: list[str] = field(default_factory=list)  # the refs/exps/... pushed
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quoted(value: str) -> str:
    """A git config value in double quotes (git's escapes for ``\\`` and ``"``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _global_config_with(header: str, tmp: Path, env: Mapping[str, str]) -> str:
    """A git global config that adds the token's header to the runner's own settings.

    ``dvc exp push`` talks to the remote through dulwich, which reads git's config files but not
    ``GIT_CONFIG_COUNT`` (how ``push_target`` hands the header to the git CLI); so the header
    goes into a 0600 file in a private temp dir that includes the previous global config, and
    is deleted with it. The token never reaches argv, ``.git/config`` or the log."""
    previous = env.get("GIT_CONFIG_GLOBAL") or os.path.expanduser("~/.gitconfig")
    path = tmp / "gitconfig"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if Path(previous).is_file():
            f.write(f"[include]\n\tpath = {_quoted(previous)}\n")
        f.write(f"[http]\n\textraHeader = {_quoted(header)}\n")
    return str(path)


def _one_line(text: str, secrets: list[str]) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    line = (errors or lines or ["no output"])[-1]
    line = line.removeprefix("ERROR:").strip()
    for secret in secrets:
        if secret:
            line = line.replace(secret, "[MASKED]")
    return line


def push_experiments(root: Path, record: SweepRecord, env: Mapping[str, str] | None = None) -> Kept:
    """``dvc exp push --force TARGET REF...`` of the sweep's completed points.

    The cached outputs go to the DVC remote as well (DVC's default, no ``--no-cache``): the
    pipeline job pushes its outputs there already, and without the models a reviewer's
    ``dvc exp pull`` would fail on the missing cache and ``dvc exp apply`` leave the outs out.
    ``--force``: a retried job saves the same points again as new commits; the refs move."""
    refs = [p.experiment for p in record.points if p.ok and p.experiment]
    source = dict(os.environ if env is None else env)
    if not refs:  # no point completed: nothing to keep, nothing to advise
        return Kept(REVIEWER_REMOTE)
    try:
        target, push_env = push_target(source)
    except UserError as exc:
        return Kept(REVIEWER_REMOTE, error=str(exc))
    push_env.update(DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="1", GIT_TERMINAL_PROMPT="0")
    headers = [
        v
        for k, v in push_env.items()
        if k.startswith("GIT_CONFIG_VALUE_") and v.startswith("Authorization:")
    ]
    with tempfile.TemporaryDirectory(prefix="mlops-exp-push-") as tmp:
        if headers:
            push_env["GIT_CONFIG_GLOBAL"] = _global_config_with(headers[-1], Path(tmp), source)
        cmd = [DVC, "exp", "push", "--force", target, *refs]
        try:
            proc = subprocess.run(
                cmd,
                cwd=root,
                env=push_env,
                capture_output=True,
                text=True,
                timeout=PUSH_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Kept(REVIEWER_REMOTE, error=f"dvc exp push did not finish: {exc}")
    if proc.returncode != 0:
        secrets = [source.get(TOKEN_ENV, ""), *headers]
        return Kept(REVIEWER_REMOTE, error=_one_line(proc.stderr + "\n" + proc.stdout, secrets))
    return Kept(REVIEWER_REMOTE, refs=refs)


def keep(root: Path, record: SweepRecord) -> Kept:
    """Push, then record the outcome in reports/sweep.json and the section. A failed push does
    not fail the command: one line here, and the PR comment says the experiments were not kept
    (a failed CI job would turn Forgejo's comment into "Pipeline failed" without the table)."""
    from machinery.sweep.run import say
    from machinery.sweep.section import write_section

    kept = push_experiments(root, record)
    record.kept = kept.as_dict()
    record.write(root)
    write_section(root, record)
    if kept.error:
        say(f"WARNING: the experiments were not kept (dvc exp push failed): {kept.error}")
    elif kept.refs:
        say(f"{len(kept.refs)} experiments pushed to {kept.remote} (dvc exp pull {kept.remote} …)")
    return kept
