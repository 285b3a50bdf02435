"""The commit a stage's outputs come from: stable across commits that do not touch its inputs,
so a fresh clone reproduces the committed ``dvc.lock`` (machinery.provenance)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from machinery.modelcard import now_utc
from machinery.provenance import stage_provenance

DVC_YAML = """\
stages:
  prep:
    cmd: python prep.py
    deps: [prep.py]
    params: [prep]
    outs: [out/prepared]
  train:
    cmd: python train.py
    deps: [out/prepared, train.py, lib]
    params: [train]
    outs: [out/model]
  report:
    cmd: python report.py
    deps: [out/model, report.py]
    outs: [out/report]
"""
# The inputs of train and of prep upstream of it (``a__b`` is the file ``a/b``).
PROJECT = {
    "dvc.yaml": DVC_YAML,
    "params.yaml": "prep: {n: 1}\ntrain: {c: 1}\n",
    "prep.py": "1",
    "train.py": "1",
    "lib__util.py": "1",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(root: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    return tmp_path


def test_commits_that_do_not_touch_the_inputs_do_not_move_it(repo: Path) -> None:
    base = commit(
        repo,
        "code",
        **{
            "dvc.yaml": DVC_YAML,
            "params.yaml": "prep: {n: 1}\ntrain: {c: 1}\nreport: {x: 1}\n",
            "prep.py": "1",
            "train.py": "1",
            "lib__util.py": "1",
            "report.py": "1",
            "README.md": "1",
        },
    )
    first = stage_provenance("train", repo)
    assert first.commit == base and first.epoch is not None
    # The lock written after the run, a README edit, a downstream stage and another params
    # section: none of them is an input of train.
    commit(repo, "lock", **{"dvc.lock": "x"})
    commit(repo, "docs", **{"README.md": "2", "report.py": "2"})
    commit(repo, "report param", **{"params.yaml": "prep: {n: 1}\ntrain: {c: 1}\nreport: {x: 2}\n"})
    assert stage_provenance("train", repo) == first
    # The report stage reads train's output, so it moved with report.py.
    assert stage_provenance("report", repo).commit != base


@pytest.mark.parametrize(
    "change",
    [
        {"train.py": "2"},
        {"lib__util.py": "2"},  # a file inside a dep directory
        {"prep.py": "2"},  # an upstream stage's code
        {"params.yaml": "prep: {n: 2}\ntrain: {c: 1}\n"},  # an upstream stage's params
        {"params.yaml": "prep: {n: 1}\ntrain: {c: 2}\n"},
    ],
)
def test_a_change_to_an_input_moves_it(repo: Path, change: dict[str, str]) -> None:
    commit(repo, "code", **PROJECT)
    changed = commit(repo, "change", **change)
    commit(repo, "lock", **{"dvc.lock": "x"})
    assert stage_provenance("train", repo).commit == changed


def test_params_set_back_to_an_older_value_name_the_commit_that_did_it(repo: Path) -> None:
    commit(repo, "a", **PROJECT)
    commit(repo, "b", **{"params.yaml": "prep: {n: 1}\ntrain: {c: 2}\n"})
    back = commit(repo, "c", **{"params.yaml": "prep: {n: 1}\ntrain: {c: 1}\n"})
    assert stage_provenance("train", repo).commit == back


def test_uncommitted_inputs_are_dirty_with_no_reproducible_time(repo: Path) -> None:
    head = commit(repo, "code", **PROJECT)
    (repo / "README.md").write_text("not an input")
    assert stage_provenance("train", repo).commit == head
    (repo / "lib/util.py").write_text("edited")
    dirty = stage_provenance("train", repo)
    assert dirty.commit == f"{head}+dirty" and dirty.epoch is None
    assert "SOURCE_DATE_EPOCH" not in dirty.env
    git(repo, "checkout", "--", "lib/util.py")
    (repo / "params.yaml").write_text("prep: {n: 1}\ntrain: {c: 9}\n")
    assert stage_provenance("train", repo).commit == f"{head}+dirty"


def test_outside_git_it_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    assert stage_provenance("train", tmp_path).commit == "unknown"


def test_the_card_time_follows_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert now_utc().isoformat() == "2023-11-14T22:13:20+00:00"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert now_utc().year >= 2026
