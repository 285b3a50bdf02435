"""The revision the comment diffs against: the target branch, fetched when a shallow CI clone
lacks it. The diff itself is ``machinery.report.diff.against`` (DVC's own diff commands)."""

from __future__ import annotations

import subprocess

from machinery.errors import UserError


def _resolves(rev: str) -> bool:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def target_revision(branch: str) -> str:
    """``origin/<branch>`` (what CI clones have), else ``<branch>``, else fetched from origin."""
    for rev in (f"origin/{branch}", branch):
        if _resolves(rev):
            return rev
    fetch = subprocess.run(
        [
            "git",
            "fetch",
            "--no-tags",
            "--depth=1",
            "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        ],
        capture_output=True,
        text=True,
    )
    if fetch.returncode == 0 and _resolves(f"origin/{branch}"):
        return f"origin/{branch}"
    last = (fetch.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(f"target branch {branch!r} is not in this clone and git fetch failed: {last}")
