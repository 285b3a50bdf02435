"""``make serve``'s preparation: publish the pipeline's model once and point the alias at it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from machinery.errors import UserError
from machinery.registry import Registry
import service.__main__ as service_main_module
from service.dev import main as dev_main
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


def test_make_serve_ignores_an_exported_registry_url(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make serve` publishes and moves an alias: never in the shared registry a user exported
    for the CLI, only in .local/registry or what --registry names."""
    shutil.copytree(trained.a, tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_REGISTRY_URL", "s3://shared-bucket/registry")
    monkeypatch.setenv("SERVE_TOKEN", "dev-" + "x" * 30)
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN_SHA256", "")  # dev.main sets it; restored after
    served: list[str] = []
    monkeypatch.setattr(
        service_main_module, "main", lambda argv: served.append(os.environ["MLOPS_REGISTRY_URL"])
    )
    dev_main(["--port", "1"])
    assert served == [".local/registry"]
    assert Registry.from_url(str(tmp_path / ".local/registry")).alias("dev").tag.startswith("dev-")

    dev_main(["--port", "1", "--registry", str(tmp_path / "other")])
    assert served[-1] == str(tmp_path / "other")
    assert Registry.from_url(str(tmp_path / "other")).alias("dev").tag.startswith("dev-")
