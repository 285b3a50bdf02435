"""``make serve``'s preparation: publish the pipeline's model once and point the alias at it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from machinery.errors import UserError
from machinery.registry import Registry
from service.dev import publish_dev_model
from service.settings import Settings
from tests.service.conftest import Trained


def test_publishes_once_and_moves_alias(trained: Trained, tmp_path: Path) -> None:
    settings = Settings(registry_url=str(tmp_path / "registry"), model_alias="dev")
    models = tmp_path / "models"
    shutil.copytree(trained.a, models)
    tag = publish_dev_model(settings, models)
    assert tag.startswith("dev-") and len(tag) == 16
    assert publish_dev_model(settings, models) == tag  # idempotent
    registry = Registry.from_url(settings.registry_url)
    assert [m.tag for m in registry.tags()] == [tag]
    assert registry.alias("dev").tag == tag
    shutil.rmtree(models)
    shutil.copytree(trained.b, models)
    retrained = publish_dev_model(settings, models)
    assert retrained != tag
    assert registry.alias("dev").tag == retrained


def test_without_a_trained_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="make run"):
        publish_dev_model(Settings(registry_url=str(tmp_path / "r")), tmp_path / "models")
