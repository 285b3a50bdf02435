from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.workspace import Workspace


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The repository after one full ``dvc repro`` on embedded defaults (shared, read-only)."""
    ws = Workspace.clone(tmp_path_factory.mktemp("repo") / "ws")
    ws.dvc("repro")
    return ws


@pytest.fixture
def workspace(reproduced: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the reproduced repository (outputs, DVC cache and git included)."""
    return reproduced.copy_to(tmp_path / "ws")
