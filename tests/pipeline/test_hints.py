"""``make serve``'s hint follows the card: an image upload for an image model, JSON rows for a
tabular one; each hint, run as printed, is a request the service answers with 200."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from machinery.hints import EXAMPLE_IMAGE, MAX_LITERAL_FEATURES, predict_hint
from machinery.modelcard import TensorSpec
from tests.support.fixture_models import FixtureModel, build_fixture_model


def curl_argv(hint: str) -> list[str]:
    """The curl line of a hint as the shell would split it (command substitution run first)."""
    line = next(ln for ln in hint.splitlines() if ln.strip().startswith("curl "))
    expanded = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {line.strip()}"], capture_output=True, text=True, check=True
    ).stdout
    return [arg for arg in expanded.split("\0") if arg]


def post_as_curl(model: FixtureModel, hint: str, tmp_path: Path) -> int:
    """Send what the hint's curl would send, to the real app (TestClient)."""
    from fastapi.testclient import TestClient

    from machinery.registry import Registry
    from service.main import create_app
    from service.settings import Settings

    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish("hint-v1", model.model_dir, metrics={})
    registry.move_alias("dev", "hint-v1", by="test")
    settings = Settings(
        registry_url=str(tmp_path / "registry"),
        model_alias="dev",
        model_cache_dir=tmp_path / "cache",
        alias_poll_seconds=0,
        auth_enabled=False,
    )
    argv = curl_argv(hint)
    with TestClient(create_app(settings)) as client:
        if "-F" in argv:
            upload = argv[argv.index("-F") + 1].removeprefix("file=@")
            with open(upload, "rb") as fh:
                return client.post(
                    "/predict", files={"file": ("x.png", fh, "image/png")}
                ).status_code
        body = argv[argv.index("-d") + 1]
        return client.post(
            "/predict", content=body, headers={"Content-Type": "application/json"}
        ).status_code


def test_tabular_hint_is_json_and_answered(tmp_path: Path) -> None:
    model = build_fixture_model(tmp_path / "m", kind="tabular")
    hint = predict_hint(model.card, "http://127.0.0.1:8000", token="t0k")
    assert "-F" not in hint and "image" not in hint.replace("no images", "")
    assert "Authorization: Bearer t0k" in hint and "application/json" in hint
    assert post_as_curl(model, predict_hint(model.card, "http://x"), tmp_path) == 200


def test_wide_tabular_hint_builds_its_row_in_the_shell(tmp_path: Path) -> None:
    model = build_fixture_model(tmp_path / "m", kind="tabular")
    wide = model.card.model_copy(
        update={"input": TensorSpec(name="x", shape=[None, MAX_LITERAL_FEATURES + 40])}
    )
    argv = curl_argv(predict_hint(wide, "http://x"))
    body = argv[argv.index("-d") + 1]
    assert body.count("0.0") == MAX_LITERAL_FEATURES + 40


def test_image_hint_uploads_the_example_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_fixture_model(tmp_path / "m", kind="image")
    hint = predict_hint(model.card, "http://x")
    assert f"-F file=@{EXAMPLE_IMAGE}" in hint and "make example-image" in hint
    monkeypatch.chdir(tmp_path)
    Path(EXAMPLE_IMAGE).parent.mkdir(parents=True)
    Path(EXAMPLE_IMAGE).write_bytes(model.image(0))
    assert post_as_curl(model, hint, tmp_path) == 200
