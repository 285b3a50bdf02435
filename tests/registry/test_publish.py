"""Publishing, listing and downloading tags; tags are immutable, on both stores."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from machinery.modelcard import CARD_FILENAME, ModelCard, read_card
from machinery.registry import (
    InvalidModelDir,
    InvalidName,
    ModelMeta,
    Registry,
    RegistryError,
    TagExists,
    TagNotFound,
)
from tests.registry.helpers import Trained


def test_publish_list_meta_download_round_trip(
    registry: Registry, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, b = trained
    meta = registry.publish("exp-1", a.model_dir, metrics=a.metrics, commit="abc123")
    card = read_card(a.model_dir / CARD_FILENAME)

    assert meta.tag == "exp-1"
    assert meta.commit == "abc123"
    assert meta.sha256 == card.onnx_sha256
    assert meta.metrics == a.metrics
    assert meta.params == card.params and meta.params["estimator"] == "logreg"
    assert meta.data_version == card.data_version
    assert meta.card == card
    assert registry.meta("exp-1") == meta

    later = registry.publish("exp-2", b.model_dir, metrics=b.metrics)
    assert later.commit == read_card(b.model_dir / CARD_FILENAME).code_commit
    assert [m.tag for m in registry.tags()] == ["exp-2", "exp-1"]

    path = registry.download("exp-1", tmp_path / "serve")
    assert path == tmp_path / "serve" / "model.onnx"
    assert path.read_bytes() == a.onnx_bytes
    assert read_card(tmp_path / "serve" / CARD_FILENAME) == card
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([CARD_FILENAME, "model.onnx"])


def test_meta_json_is_plain_json_under_the_documented_layout(
    registry: Registry, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    registry.publish("v1.0.0", a.model_dir, metrics=a.metrics)
    blob = registry.store.read("models/v1.0.0/meta.json")
    assert blob is not None
    document = json.loads(blob.data)
    assert {"tag", "commit", "created", "params", "metrics", "data_version", "sha256", "card"} <= (
        set(document)
    )
    assert registry.store.children("models/v1.0.0") == ["meta.json", "model.onnx"]


def test_empty_registry_lists_nothing_and_unknown_tag_is_not_found(registry: Registry) -> None:
    assert registry.tags() == []
    with pytest.raises(TagNotFound, match="nope"):
        registry.meta("nope")
    with pytest.raises(TagNotFound):
        registry.download("nope", Path("/nonexistent-dir-never-created"))


def test_same_tag_same_bytes_is_idempotent(
    registry: Registry, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    first = registry.publish("exp-1", a.model_dir, metrics=a.metrics)
    again = registry.publish("exp-1", a.model_dir, metrics={"accuracy": 0.0})
    assert again == first  # the stored meta stands, including created and metrics
    assert [m.tag for m in registry.tags()] == ["exp-1"]


def test_same_tag_different_bytes_is_refused_and_the_stored_model_is_untouched(
    registry: Registry, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, b = trained
    registry.publish("exp-1", a.model_dir, metrics=a.metrics)
    with pytest.raises(TagExists, match="exp-1.*immutable"):
        registry.publish("exp-1", b.model_dir, metrics=b.metrics)
    assert registry.download("exp-1", tmp_path).read_bytes() == a.onnx_bytes


def test_the_same_bytes_may_be_published_under_another_tag(
    registry: Registry, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    registry.publish("exp-1", a.model_dir, metrics=a.metrics)
    registry.publish("exp-1-rc", a.model_dir, metrics=a.metrics)
    assert {m.tag for m in registry.tags()} == {"exp-1", "exp-1-rc"}


def test_concurrent_publishes_of_one_tag_with_different_bytes_exactly_one_wins(
    registry_url: str, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, b = trained
    for round_ in range(2):
        tag = f"race-{round_}"
        outcomes: list[ModelMeta | RegistryError] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        # A registry (and S3 client) per publisher: like separate CI jobs, nothing shared.
        clients = [Registry.from_url(registry_url) for _ in range(8)]

        def publish(reg: Registry, source: Trained) -> None:
            start.wait()
            try:
                result: ModelMeta | RegistryError = reg.publish(
                    tag, source.model_dir, metrics=source.metrics
                )
            except RegistryError as exc:
                result = exc
            with lock:
                outcomes.append(result)

        threads = [
            threading.Thread(target=publish, args=(clients[i], (a, b)[i % 2])) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        won = {o.sha256 for o in outcomes if isinstance(o, ModelMeta)}
        refused = [o for o in outcomes if not isinstance(o, ModelMeta)]
        assert len(won) == 1, outcomes
        assert len(refused) == 4 and all(isinstance(o, TagExists) for o in refused), outcomes
        stored = Registry.from_url(registry_url)
        winner = stored.meta(tag)
        assert winner.sha256 in won
        expected = a if winner.sha256 == read_card(a.model_dir / CARD_FILENAME).onnx_sha256 else b
        assert stored.download(tag, tmp_path / tag).read_bytes() == expected.onnx_bytes
        assert winner.card == read_card(expected.model_dir / CARD_FILENAME)


@pytest.mark.parametrize(
    "tag", ["../escape", "a/b", "", ".hidden", "-dash", "x" * 129, "sp ace", "ünï", "a\nb"]
)
def test_malformed_tags_are_refused_before_anything_is_written(
    registry: Registry, trained: tuple[Trained, Trained], tag: str
) -> None:
    a, _ = trained
    with pytest.raises(InvalidName, match="not a valid tag name"):
        registry.publish(tag, a.model_dir, metrics=a.metrics)
    with pytest.raises(InvalidName):
        registry.meta(tag)
    assert registry.store.children("") == []


def test_a_model_that_does_not_match_its_card_is_refused(
    registry: Registry, trained: tuple[Trained, Trained], copy_of: Callable[[Path], Path]
) -> None:
    a, b = trained
    mixed = copy_of(a.model_dir)
    (mixed / "model.onnx").write_bytes(b.onnx_bytes)
    with pytest.raises(InvalidModelDir, match="does not match its model card"):
        registry.publish("exp-1", mixed, metrics=a.metrics)
    assert registry.tags() == []


def test_a_directory_without_a_card_or_model_is_refused(
    registry: Registry, trained: tuple[Trained, Trained], copy_of: Callable[[Path], Path]
) -> None:
    a, _ = trained
    no_card = copy_of(a.model_dir)
    (no_card / CARD_FILENAME).unlink()
    with pytest.raises(InvalidModelDir, match="model card not found"):
        registry.publish("exp-1", no_card, metrics={})
    no_model = copy_of(a.model_dir)
    (no_model / "model.onnx").unlink()
    with pytest.raises(InvalidModelDir, match="model.onnx: not found"):
        registry.publish("exp-1", no_model, metrics={})
    broken_card = copy_of(a.model_dir)
    (broken_card / CARD_FILENAME).write_text("{}")
    with pytest.raises(InvalidModelDir, match="not a valid model card"):
        registry.publish("exp-1", broken_card, metrics={})
    assert registry.tags() == []


def test_meta_round_trips_the_card_model(
    registry: Registry, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    registry.publish("exp-1", a.model_dir, metrics=a.metrics)
    card = registry.meta("exp-1").card
    assert isinstance(card, ModelCard)
    assert card == read_card(a.model_dir / CARD_FILENAME)
    assert card.n_features == card.input.shape[1] and len(card.labels) >= 2
