from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.render import TARGETS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every deployable kustomization under k8s/, rendered once per session."""
    return {target: render(target) for target in TARGETS}
