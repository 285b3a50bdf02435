"""Experiment tags: the git tag on the commit that trained a model, which the registry publishes.

Naming scheme for the tags CI creates (documented in docs/ci.md)::

    exp-<YYYYMMDD>-<HHMMSS>-<sha7>      e.g. exp-20261201-143005-1a2b3c4

The time is the commit's committer date in UTC, so names sort by time as plain strings (``git
tag --sort=refname``, ``ls``), the same commit always gets the same name (a rerun or a race
between two jobs cannot make two tags), and the short SHA makes it unique and traceable. Every
character is one the registry accepts in a tag name.

A tag already on HEAD (one a person pushed, e.g. ``v1.2``) is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from machinery.ci.git import git, out, push_target, skip_ci_push_options
from machinery.registry.names import check_name

PREFIX = "exp-"
SCHEME = re.compile(r"^exp-\d{8}-\d{6}-[0-9a-f]{7}$")


def tag_name(commit: str, committed_at: datetime) -> str:
    """The scheme's name for ``commit`` made at ``committed_at`` (aware or UTC)."""
    if committed_at.tzinfo is None:
        committed_at = committed_at.replace(tzinfo=timezone.utc)
    stamp = committed_at.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{PREFIX}{stamp}-{commit[:7]}"


@dataclass(frozen=True)
class TagResult:
    tag: str
    commit: str
    created: bool  # False: HEAD already carried it
    pushed: bool


def head_tags(cwd: Path | None = None) -> list[str]:
    """Tags on HEAD that are valid registry names, newest first."""
    lines = out("tag", "--points-at", "HEAD", "--sort=-creatordate", cwd=cwd).splitlines()
    return [t for t in lines if t and _valid(t)]


def remote_tags_at(commit: str, remote: str, cwd: Path | None = None) -> list[str]:
    """Names of the remote's tags that point at ``commit`` (annotated ones peeled)."""
    found = []
    for line in out("ls-remote", "--tags", remote, cwd=cwd).splitlines():
        sha, _, ref = line.partition("\t")
        name = ref.removeprefix("refs/tags/")
        if sha == commit and name.endswith("^{}"):
            found.append(name[:-3])
        elif sha == commit:
            found.append(name)
    return sorted(set(found))


def _valid(tag: str) -> bool:
    try:
        check_name(tag)
    except Exception:  # noqa: BLE001 - InvalidName: a tag the registry cannot hold is skipped
        return False
    return True


def ensure_tag(
    *, push: bool, env: Mapping[str, str], cwd: Path | None = None, remote: str = "origin"
) -> TagResult:
    """Reuse HEAD's tag, else create the scheme's tag on HEAD; push it when asked."""
    commit = out("rev-parse", "HEAD", cwd=cwd)
    # CI checkouts are often shallow and without tags: ask the remote which tags name HEAD
    # (ls-remote, not a fetch of every tag, which would deepen a shallow clone).
    if push and git("remote", "get-url", remote, cwd=cwd, check=False).returncode == 0:
        for tag in remote_tags_at(commit, remote, cwd):
            git(
                "fetch",
                "--quiet",
                "--no-tags",
                remote,
                f"+refs/tags/{tag}:refs/tags/{tag}",
                cwd=cwd,
            )
    existing = head_tags(cwd)
    created = not existing
    if existing:
        tag = existing[0]
    else:
        when = datetime.fromtimestamp(int(out("log", "-1", "--format=%ct", cwd=cwd)), timezone.utc)
        tag = tag_name(commit, when)
        message = f"experiment {tag}: model trained on {commit[:12]}"
        git("tag", "-a", tag, "-m", message, "HEAD", cwd=cwd)
    pushed = False
    if push:
        target, push_env = push_target(env)
        options = skip_ci_push_options(target, push_env, cwd)
        git("push", "--quiet", *options, target, f"refs/tags/{tag}", cwd=cwd, env=push_env)
        pushed = True
    return TagResult(tag=tag, commit=commit, created=created, pushed=pushed)
