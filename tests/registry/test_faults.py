"""Registry faults an operator meets: a registry that is gone, one bad ``meta.json``, an alias
copy that disagrees with its history, a move whose answer was lost, and S3 checksum headers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from machinery.registry import (
    InvalidMeta,
    Registry,
    RegistryError,
    RegistryUnavailable,
)
from machinery.registry.local_store import LocalStore
from machinery.registry.records import AliasRecord
from machinery.registry.s3_store import S3Store
from machinery.registry.store import Blob, Store
from tests.registry.helpers import Trained, overwrite_raw
from tests.support.s3 import S3Server, use_s3_env


@pytest.fixture
def two_tags(registry: Registry, trained: tuple[Trained, Trained]) -> Registry:
    a, b = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    registry.publish("v2", b.model_dir, metrics=b.metrics)
    registry.move_alias("prod", "v1", by="setup")
    return registry


@pytest.mark.parametrize("how", ["deleted", "not a directory"])
def test_a_missing_or_unreadable_root_is_unavailable_never_empty(
    tmp_path: Path, trained: tuple[Trained, Trained], how: str
) -> None:
    root = tmp_path / "registry"
    registry = Registry.from_url(str(root))
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    registry.move_alias("prod", "v1", by="setup")
    shutil.rmtree(root)
    if how == "not a directory":
        root.write_text("a volume mounted wrongly")
    for call in (
        registry.tags,
        registry.aliases,
        lambda: registry.meta("v1"),
        lambda: registry.alias("prod"),
        lambda: registry.download("v1", tmp_path / "dl"),
        lambda: registry.move_alias("prod", "v1", by="x"),
    ):
        with pytest.raises(RegistryUnavailable, match="registry") as err:
            call()
        assert "\n" not in str(err.value)


def test_publish_creates_a_new_local_registry(
    tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    registry = Registry.from_url(str(tmp_path / "new" / "registry"))
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics={})
    assert [m.tag for m in registry.tags()] == ["v1"]


@pytest.mark.parametrize("garbage", [b"{not json", b'{"tag": "v2"}', b""])
def test_one_malformed_meta_is_flagged_and_the_rest_listed(
    two_tags: Registry, garbage: bytes
) -> None:
    overwrite_raw(two_tags, "models/v2/meta.json", garbage)
    listing = two_tags.listing()
    assert [m.tag for m in listing.models] == ["v1"]
    assert [e.tag for e in listing.invalid] == ["v2"]
    assert "not a valid meta.json" in listing.invalid[0].error
    assert [m.tag for m in two_tags.tags()] == ["v1"]
    with pytest.raises(InvalidMeta, match="v2"):
        two_tags.meta("v2")
    with pytest.raises(InvalidMeta):
        two_tags.move_alias("prod", "v2", by="x")
    assert two_tags.alias("prod").tag == "v1"


def test_history_is_the_truth_and_a_stale_alias_file_is_repaired_on_read(
    two_tags: Registry,
) -> None:
    stale = two_tags.alias("prod")
    moved = two_tags.move_alias("prod", "v2", by="bob")
    # A mover that committed its history line and died before writing alias.json:
    overwrite_raw(two_tags, "aliases/prod.json", stale.model_dump_json(indent=2).encode())
    assert two_tags.alias("prod") == moved
    blob = two_tags.store.read("aliases/prod.json")
    assert blob is not None and AliasRecord.model_validate_json(blob.data) == moved
    assert {(r.alias, r.tag) for r in two_tags.aliases()} == {("prod", "v2")}


class _LostAnswers:
    """The real store, except that writes of one key fail as a dropped connection would:
    ``after=True`` commits the bytes and then loses the answer, ``after=False`` fails first."""

    def __init__(self, store: Store, key: str, *, after: bool) -> None:
        self._store = store
        self._key = key
        self._after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read(self, key: str) -> Blob | None:
        return self._store.read(key)

    def write(self, key: str, data: bytes, *, expect: str | None) -> bool:
        if key != self._key:
            return self._store.write(key, data, expect=expect)
        if self._after:
            self._store.write(key, data, expect=expect)
        raise RegistryUnavailable(f"registry {self._store.location}: connection reset")


def test_a_move_whose_answer_was_lost_is_reported_by_what_the_history_holds(
    two_tags: Registry,
) -> None:
    store = two_tags.store
    committed = Registry(_LostAnswers(store, "aliases/prod.history.jsonl", after=True))
    record = committed.move_alias("prod", "v2", by="bob")
    assert two_tags.alias("prod") == record

    lost = Registry(_LostAnswers(store, "aliases/prod.history.jsonl", after=False))
    with pytest.raises(RegistryUnavailable, match="connection reset"):
        lost.move_alias("prod", "v1", by="carol")
    assert two_tags.alias("prod") == record  # failed for the caller, and in the registry


def test_a_move_whose_alias_copy_cannot_be_written_still_stands_everywhere(
    two_tags: Registry,
) -> None:
    broken = Registry(_LostAnswers(two_tags.store, "aliases/prod.json", after=False))
    record = broken.move_alias("prod", "v2", by="bob")
    assert broken.alias("prod") == record == two_tags.alias("prod")
    assert [r.tag for r in two_tags.alias_history("prod")] == ["v1", "v2"]


def test_a_local_alias_copy_that_is_unreadable_does_not_hide_the_alias(
    tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    registry = Registry.from_url(str(tmp_path / "registry"))
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics={})
    registry.move_alias("prod", "v1", by="setup")
    assert isinstance(registry.store, LocalStore)
    copy = registry.store.root / "aliases" / "prod.json"
    copy.unlink()
    copy.mkdir()  # neither readable nor replaceable
    assert registry.alias("prod").tag == "v1"
    with pytest.raises(RegistryError):
        registry.store.read("aliases/prod.json")


@pytest.mark.integration
def test_s3_uploads_send_no_optional_checksums(
    s3_server: S3Server,
    s3_bucket: str,
    trained: tuple[Trained, Trained],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore >= 1.36 adds CRC32 trailers to every upload unless told ``when_required``;
    some S3-compatible servers reject them. Seen on the wire to the real server."""
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url(f"s3://{s3_bucket}/checksums")
    store = registry.store
    assert isinstance(store, S3Store)
    config = store.client.meta.config
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append({k.lower(): str(v) for k, v in request.headers.items()})

    store.client.meta.events.register("before-send.s3.PutObject", record)
    a, b = trained
    registry.publish("v1", a.model_dir, metrics={})
    registry.publish("v2", b.model_dir, metrics={})
    registry.move_alias("prod", "v2", by="bob")
    assert len(sent) >= 5  # model, meta, history, alias copy
    for headers in sent:
        assert not [h for h in headers if h.startswith("x-amz-checksum-")], headers
        assert "x-amz-sdk-checksum-algorithm" not in headers, headers
        assert "aws-chunked" not in headers.get("content-encoding", ""), headers
    assert registry.alias("prod").tag == "v2"
    assert [m.tag for m in registry.tags()] == ["v2", "v1"]
    assert registry.download("v2", tmp_path / "dl").read_bytes() == b.onnx_bytes
