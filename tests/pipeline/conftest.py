from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.workspace import Workspace, reproduced_once


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The repository after one full ``dvc repro`` on embedded defaults (shared, read-only)."""
    return reproduced_once(tmp_path_factory.getbasetemp() / "reproduced")


@pytest.fixture
def workspace(reproduced: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the reproduced repository (outputs, DVC cache and git included)."""
    return reproduced.copy_to(tmp_path / "ws")
