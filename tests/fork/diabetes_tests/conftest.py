from __future__ import annotations


import pytest

from tests.support.workspace import Workspace, reproduced_once


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The repository after one ``dvc repro`` (shared with the template's pipeline tests)."""
    return reproduced_once(tmp_path_factory.getbasetemp() / "reproduced")
