"""The DVC cache a sweep's copies use is the one ``dvc cache dir`` names, read without DVC."""

from __future__ import annotations

from pathlib import Path

import pytest

from machinery.sweep.copies import cache_dir
from tests.sweep.project import make_sweep_project


@pytest.mark.parametrize(
    "setting", [None, ("--local", "../elsewhere"), ("", "/tmp/mlops-cache-x"), ("", "rel")]
)
def test_the_cache_dir_is_dvcs(tmp_path: Path, setting: tuple[str, str] | None) -> None:
    project = make_sweep_project(tmp_path / "p")
    if setting is not None:
        flag, value = setting
        project.must("dvc", "config", *([flag] if flag else []), "cache.dir", value)
    assert cache_dir(project.path) == project.must("dvc", "cache", "dir").strip()
