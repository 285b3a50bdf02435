"""What ``/get_experiment_metas`` and ``/replace_ml_model`` say when the registry is partly
unreadable, empty or gone: every readable tag is still listed, an empty volume is not "nothing
published", and no answer shows a server path to a token holder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from machinery.registry import Registry
from service.main import create_app
from tests.service.conftest import (
    PREDICT,
    TAG_A,
    TAG_B,
    AppFactory,
    Trained,
    publish_both,
    settings_for,
)
from tests.service.test_model_store import served_tag, swap
from tests.support.s3 import S3Server, use_s3_env


def test_an_unreadable_tag_is_listed_apart_and_the_rest_still_listed(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    # An OSError on one tag's meta.json (tests run as root, which chmod 000 does not stop: a
    # directory in its place fails the read the same way, as an OSError of that one file).
    meta = registry_dir / "models" / TAG_B / "meta.json"
    meta.unlink()
    meta.mkdir()
    listing = client.get("/get_experiment_metas", headers=PREDICT)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert [m["tag"] for m in body["experiments"]] == [TAG_A]
    assert [e["tag"] for e in body["invalid"]] == [TAG_B]
    assert "meta.json unreadable" in body["invalid"][0]["error"]
    assert str(registry_dir) not in listing.text
    assert served_tag(client, trained) == TAG_A


def test_error_bodies_name_the_tag_never_a_server_path(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    status, text = swap(client, "never-published")
    assert status == 404, text
    assert "never-published" in text and "<registry>" in text
    (registry_dir / "models" / TAG_B / "meta.json").write_text('{"tag": "half written')
    status, text = swap(client, TAG_B)
    assert status == 422, text
    listing = client.get("/get_experiment_metas", headers=PREDICT).text
    shutil.rmtree(registry_dir)
    gone_status, gone = swap(client, TAG_A)
    assert gone_status == 503, gone
    assert "does not exist" in gone
    for answer in (text, listing, gone):
        assert str(registry_dir) not in answer, answer
        assert str(registry_dir.parent) not in answer, answer


def test_a_registry_without_models_is_unavailable_never_empty(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    # The mount point exists but the volume is not mounted (or the prefix is wrong).
    for child in registry_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    listing = client.get("/get_experiment_metas", headers=PREDICT)
    assert listing.status_code == 503, listing.text
    assert "no models/" in listing.json()["detail"]
    status, text = swap(client, TAG_B)
    assert status == 503, text
    assert served_tag(client, trained) == TAG_A  # the loaded model keeps serving


def _over_the_cap(client: TestClient, trained: Trained, cache: Path) -> None:
    status, text = swap(client, TAG_B)
    assert status == 422, text
    size = (trained.b / "model.onnx").stat().st_size
    assert f"model.onnx is {size} bytes, over MLOPS_MAX_MODEL_BYTES" in text
    assert served_tag(client, trained) == TAG_A  # the old model keeps serving
    assert not [p for p in cache.rglob("*") if p.is_file()], "bytes were written to the cache"


def test_a_model_over_the_cache_cap_is_refused_before_any_byte_is_written(
    make_app: AppFactory, trained: Trained, tmp_path: Path
) -> None:
    cap = (trained.b / "model.onnx").stat().st_size - 1
    assert (trained.a / "model.onnx").stat().st_size <= cap  # TAG_A still loads at start-up
    with TestClient(make_app(max_model_bytes=cap)) as client:
        _over_the_cap(client, trained, tmp_path / "cache")


@pytest.mark.integration
def test_the_cap_holds_on_an_s3_registry_too(
    private_s3_server: S3Server, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, private_s3_server, tmp_path)
    url = f"s3://{private_s3_server.make_bucket()}/registry"
    publish_both(Registry.from_url(url), trained)
    cap = (trained.b / "model.onnx").stat().st_size - 1
    with TestClient(create_app(settings_for(url, tmp_path, max_model_bytes=cap))) as client:
        _over_the_cap(client, trained, tmp_path / "cache")
