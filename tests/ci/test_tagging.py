"""Experiment tags: the documented sortable scheme, reuse of HEAD's tag, push, rerun no-op."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from machinery.ci.tagging import SCHEME, tag_name
from machinery.registry.names import check_name
from tests.ci.gitrepo import commit_file, git, git_env, make_origin

MLOPS = str(Path(sys.executable).parent / "mlops")


def test_names_sort_by_commit_time_and_are_registry_names() -> None:
    start = datetime(2026, 1, 31, 23, 59, 58, tzinfo=timezone.utc)
    times = [start + timedelta(seconds=s) for s in (0, 1, 2, 86400, 40 * 86400)]
    names = [tag_name(f"{i:x}" * 40, t) for i, t in enumerate(times)]
    assert sorted(names) == names
    for name in names:
        assert SCHEME.fullmatch(name) and check_name(name) == name
    # Another time zone, same instant: same name.
    cet = times[0].astimezone(timezone(timedelta(hours=1)))
    assert tag_name("a" * 40, cet) == tag_name("a" * 40, times[0])


def _ci_tag(cwd: Path) -> str:
    done = subprocess.run(
        [MLOPS, "ci", "tag", "--push", "--quiet"],
        cwd=cwd,
        env=git_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.integration
def test_tag_is_created_pushed_then_reused_by_a_rerun(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    job1 = origin.clone(tmp_path / "job1")
    head = commit_file(job1, "README.md", "x\n", "train something")
    git(job1, "push", "-q", "origin", "main")

    tag = _ci_tag(job1)
    assert SCHEME.fullmatch(tag) and tag.endswith(head[:7])
    assert origin.tags() == [tag]
    assert git(origin.path, "rev-parse", f"{tag}^{{commit}}") == head

    # A rerun in a fresh shallow checkout without tags finds the pushed tag: same name, no new one.
    job2 = tmp_path / "job2"
    git(tmp_path, "clone", "-q", "--depth=1", "--no-tags", f"file://{origin.path}", "job2")
    assert _ci_tag(job2) == tag
    assert origin.tags() == [tag]


@pytest.mark.integration
def test_a_tag_a_person_put_on_head_is_used_as_it_is(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    clone = origin.clone(tmp_path / "c")
    git(clone, "tag", "v1.2", "HEAD")
    git(clone, "push", "-q", "origin", "v1.2")
    job = origin.clone(tmp_path / "job")
    assert _ci_tag(job) == "v1.2"
    assert origin.tags() == ["v1.2"]
