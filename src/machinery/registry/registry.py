"""The model registry: immutable experiment tags and movable aliases, on S3 or a directory.

Layout under the root (see shared/DESIGN.md)::

    models/<tag>/model.onnx
    models/<tag>/meta.json
    aliases/<alias>.json
    aliases/<alias>.history.jsonl

The CLI, CI and the inference service all go through this class; nothing else writes the layout.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from machinery.errors import UserError
from machinery.modelcard import (
    CARD_FILENAME,
    MODEL_FILENAME,
    ModelCard,
    read_card,
    sha256_file,
)
from machinery.registry.errors import (
    AliasNotFound,
    IntegrityError,
    InvalidMeta,
    InvalidModelDir,
    RegistryError,
    RegistryUnavailable,
    TagExists,
    TagNotFound,
)
from machinery.registry.local_store import LocalStore
from machinery.registry.names import check_name
from machinery.registry.records import AliasRecord, InvalidEntry, Listing, ModelMeta
from machinery.registry.s3_store import CONNECT_TIMEOUT, MAX_ATTEMPTS, READ_TIMEOUT, S3Store
from machinery.registry.store import Store

META_FILENAME = "meta.json"
DEFAULT_REGISTRY_URL = ".local/registry"
REGISTRY_URL_ENV = "MLOPS_REGISTRY_URL"
# Compare-and-swap retries when several movers race on one alias.
_MOVE_ATTEMPTS = 50


def registry_url_from_env() -> str:
    return os.environ.get(REGISTRY_URL_ENV) or DEFAULT_REGISTRY_URL


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(when: datetime) -> datetime:
    """Naive datetimes are taken as UTC (what the registry stores)."""
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> Registry:
        """``s3://bucket/prefix`` (boto3, standard AWS_* env) or a local directory path."""
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise RegistryError(f"registry URL {url!r} names no bucket (s3://BUCKET/PREFIX)")
            return cls(
                S3Store(
                    parsed.netloc,
                    parsed.path,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_attempts=max_attempts,
                )
            )
        if parsed.scheme == "file":
            return cls(LocalStore(Path(parsed.path)))
        if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, a path
            raise RegistryError(
                f"registry URL {url!r}: unsupported scheme '{parsed.scheme}' "
                "(use s3://BUCKET/PREFIX or a directory path)"
            )
        return cls(LocalStore(Path(url).expanduser().absolute()))

    @classmethod
    def from_env(cls) -> Registry:
        """The registry named by ``MLOPS_REGISTRY_URL``, else ``.local/registry``."""
        return cls.from_url(registry_url_from_env())

    @property
    def location(self) -> str:
        return self.store.location

    # --- tags -------------------------------------------------------------------------------

    def publish(
        self,
        tag: str,
        model_dir: Path,
        *,
        metrics: dict[str, Any],
        commit: str | None = None,
    ) -> ModelMeta:
        """Publish ``model_dir``'s model under ``tag``, write-once.

        The same bytes again return the stored meta unchanged; other bytes raise ``TagExists``.
        The model is uploaded before ``meta.json``, so a listed tag always has its model.
        """
        check_name(tag, "tag")
        model_path = model_dir / MODEL_FILENAME
        card = self._read_card(model_dir)
        if not model_path.is_file():
            raise InvalidModelDir(f"{model_path}: not found (run the train stage first)")
        sha256 = sha256_file(model_path)
        if sha256 != card.onnx_sha256:
            raise InvalidModelDir(
                f"{model_path}: sha256 {sha256[:12]}… does not match its model card "
                f"({card.onnx_sha256[:12]}…): the two files are from different runs"
            )
        self.store.create_root()
        existing = self._read_meta(tag)
        if existing is not None:
            return self._same_or_refuse(existing, sha256)
        if not self.store.put_file_once(self._model_key(tag), model_path, sha256):
            stored = self.store.stored_sha256(self._model_key(tag))
            if stored != sha256:
                raise self._tag_exists(tag, stored or "?")
        meta = ModelMeta(
            tag=tag,
            commit=commit or card.code_commit,
            created=_now(),
            params=card.params,
            metrics=metrics,
            data_version=card.data_version,
            sha256=sha256,
            card=card,
        )
        body = (meta.model_dump_json(indent=2) + "\n").encode()
        if not self.store.write(self._meta_key(tag), body, expect=None):
            # A concurrent publisher of the same bytes wrote meta.json first: theirs stands.
            raced = self._read_meta(tag)
            if raced is None:
                raise RegistryError(f"tag {tag}: meta.json vanished while publishing; retry")
            return self._same_or_refuse(raced, sha256)
        return meta

    def tags(self) -> list[ModelMeta]:
        """Every published tag whose meta reads, newest first (``listing`` also names the
        unreadable ones)."""
        return self.listing().models

    def listing(self) -> Listing:
        """Every published tag, newest first; a malformed or unreadable ``meta.json`` is set
        apart in ``invalid`` instead of failing the whole listing. A registry that cannot be
        listed still raises, and so does one that fails a read and then cannot be listed again
        (the store went down mid-way, not one tag)."""
        found: list[ModelMeta] = []
        invalid: list[InvalidEntry] = []
        for name in self.store.children("models"):
            try:
                meta = self._read_meta(name)
            except InvalidMeta as exc:
                invalid.append(InvalidEntry(tag=name, error=str(exc)))
                continue
            except RegistryUnavailable as exc:
                self.store.children("models")  # raises if the registry itself is gone
                invalid.append(InvalidEntry(tag=name, error=f"meta.json unreadable: {exc}"))
                continue
            if meta is not None:  # None: a publish still uploading (or abandoned) its model
                found.append(meta)
        found.sort(key=lambda m: m.created, reverse=True)
        return Listing(models=found, invalid=invalid)

    def meta(self, tag: str) -> ModelMeta:
        check_name(tag, "tag")
        meta = self._read_meta(tag)
        if meta is None:
            raise TagNotFound(f"tag {tag} is not published in {self.location}")
        return meta

    def download(self, tag: str, dest_dir: Path, max_bytes: int | None = None) -> Path:
        """Write ``dest_dir/model.onnx`` (and its card) atomically after checking its sha256;
        a model over ``max_bytes`` raises ``ObjectTooLarge`` before anything is written."""
        meta = self.meta(tag)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / MODEL_FILENAME
        tmp = dest_dir / f".{MODEL_FILENAME}.{uuid.uuid4().hex}.part"
        card_tmp = tmp.with_suffix(".card")
        try:
            if not self.store.fetch_file(self._model_key(tag), tmp, max_bytes):
                raise IntegrityError(f"tag {tag}: meta.json exists but model.onnx is missing")
            actual = sha256_file(tmp)
            if actual != meta.sha256:
                raise IntegrityError(
                    f"tag {tag}: downloaded model.onnx has sha256 {actual[:12]}…, "
                    f"meta.json says {meta.sha256[:12]}…: refusing corrupted or tampered bytes"
                )
            card_tmp.write_text(meta.card.model_dump_json(indent=2) + "\n")
            os.replace(card_tmp, dest_dir / CARD_FILENAME)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            card_tmp.unlink(missing_ok=True)
        return dest

    # --- aliases ----------------------------------------------------------------------------

    def alias(self, name: str) -> AliasRecord:
        """Where ``name`` points now: the last line of its history, the one source of truth.

        ``alias.json`` is a copy for people and tools browsing the bucket. A mover that stopped
        between its history line and that copy leaves them apart; reading repairs the copy
        (best effort: a read-only registry still answers from the history).
        """
        history = self.alias_history(name)
        if not history:
            raise AliasNotFound(f"alias {name} does not exist in {self.location}")
        current = history[-1]
        try:
            blob = self.store.read(self._alias_key(name))
            if blob is None or blob.data != self._alias_body(current):
                self._sync_alias_file(name)
        except RegistryError:
            pass  # read-only mount, credentials, a broken copy: the history already answered
        return current

    def aliases(self) -> list[AliasRecord]:
        """Every alias with its current tag, by name."""
        names = {
            n[: -len(suffix)]
            for n in self.store.children("aliases")
            for suffix in (".history.jsonl", ".json")
            if n.endswith(suffix)
        }
        records = []
        for n in sorted(names):
            try:
                records.append(self.alias(n))
            except AliasNotFound:
                continue  # a stray alias.json without history: never moved through us
        return records

    def move_alias(self, name: str, tag: str, *, by: str) -> AliasRecord:
        """Point ``name`` at ``tag`` (which must be published) and append the move to history.

        The history file is the commit point (compare-and-swap on its version), so concurrent
        movers never lose a line, and it is what ``alias`` reads: a move either is in the
        history (done, everywhere) or is not (failed, everywhere). ``alias.json`` is then
        brought in line; if that copy cannot be written the move still stands (and readers
        repair the copy). When the history write itself fails without an answer (a timeout
        after the server may have committed it), the history is read back to tell which.
        Moving an alias to the tag it already points at changes nothing.
        """
        check_name(name, "alias")
        self.meta(tag)
        key = self._history_key(name)
        for _ in range(_MOVE_ATTEMPTS):
            blob = self.store.read(key)
            history = self._parse_history(blob.data if blob else b"", key)
            last = history[-1] if history else None
            if last is not None and last.tag == tag:
                self.alias(name)  # repairs alias.json if a mover stopped half-way
                return last
            record = AliasRecord(
                alias=name,
                tag=tag,
                moved_at=_now(),
                moved_by=by,
                previous_tag=last.tag if last else None,
            )
            line = (record.model_dump_json() + "\n").encode()
            data = (blob.data if blob else b"") + line
            try:
                written = self.store.write(key, data, expect=blob.version if blob else None)
            except RegistryUnavailable as exc:
                written = self._landed(name, record, exc)
            if written:
                try:
                    self._sync_alias_file(name)
                except RegistryError:
                    pass  # the history holds the move; the next reader repairs alias.json
                return record
            time.sleep(random.uniform(0.005, 0.05))
        raise RegistryError(f"alias {name}: too many concurrent moves; retry")

    def _landed(self, name: str, record: AliasRecord, failure: RegistryUnavailable) -> bool:
        """Whether a history write that raised was committed after all; if that cannot be
        read either, the move is reported as failed and says its outcome is unknown."""
        try:
            history = self.alias_history(name)
        except RegistryError:
            raise RegistryUnavailable(
                f"alias {name}: moving to {record.tag} failed and the history cannot be read "
                f"back to tell whether it was recorded ({failure}); check with "
                f"`mlops registry alias show {name}` before retrying"
            ) from None
        if record in history:
            return True
        raise failure

    def alias_history(self, name: str) -> list[AliasRecord]:
        """Every move of ``name``, oldest first (empty for an alias never moved)."""
        check_name(name, "alias")
        key = self._history_key(name)
        blob = self.store.read(key)
        return self._parse_history(blob.data if blob else b"", key)

    def served_at(self, name: str, when: datetime) -> str | None:
        """The tag ``name`` pointed at, at ``when`` (naive = UTC); ``None`` before its first
        move. ``AliasNotFound`` if the alias was never moved."""
        history = self.alias_history(name)
        if not history:
            raise AliasNotFound(f"alias {name} does not exist in {self.location}")
        moment = _as_utc(when)
        tag: str | None = None
        for record in history:
            if _as_utc(record.moved_at) <= moment:
                tag = record.tag
        return tag

    # --- internals --------------------------------------------------------------------------

    def _sync_alias_file(self, name: str) -> None:
        """Make ``alias.json`` equal the last history line.

        Reading alias.json's version *before* the history means a writer holding an older
        history loses the compare-and-swap to one that wrote after it, so the last write wins
        only with the newest line.
        """
        key = self._alias_key(name)
        for _ in range(_MOVE_ATTEMPTS):
            current = self.store.read(key)
            history = self.alias_history(name)
            if not history:
                return
            body = self._alias_body(history[-1])
            if current is not None and current.data == body:
                return
            if self.store.write(key, body, expect=current.version if current else None):
                return
            time.sleep(random.uniform(0.005, 0.05))
        # Lost every race: other movers keep writing it, and readers follow the history anyway.

    @staticmethod
    def _alias_body(record: AliasRecord) -> bytes:
        return (record.model_dump_json(indent=2) + "\n").encode()

    def _read_card(self, model_dir: Path) -> ModelCard:
        try:
            return read_card(model_dir / CARD_FILENAME)
        except UserError as exc:
            raise InvalidModelDir(str(exc)) from None

    def _read_meta(self, tag: str) -> ModelMeta | None:
        blob = self.store.read(self._meta_key(tag))
        if blob is None:
            return None
        try:
            return ModelMeta.model_validate_json(blob.data)
        except ValidationError as exc:
            raise InvalidMeta(
                f"{self.location}/{self._meta_key(tag)}: not a valid meta.json "
                f"({_first_error(exc)})"
            ) from None

    def _same_or_refuse(self, existing: ModelMeta, sha256: str) -> ModelMeta:
        if existing.sha256 != sha256:
            raise self._tag_exists(existing.tag, existing.sha256)
        return existing

    def _tag_exists(self, tag: str, stored_sha256: str) -> TagExists:
        return TagExists(
            f"tag {tag} already holds a different model (sha256 {stored_sha256[:12]}…); "
            "tags are immutable: publish under a new tag"
        )

    def _parse_record(self, data: bytes, key: str) -> AliasRecord:
        try:
            return AliasRecord.model_validate_json(data)
        except ValidationError as exc:
            raise RegistryError(
                f"{self.location}/{key}: not a valid alias record ({_first_error(exc)})"
            ) from None

    def _parse_history(self, data: bytes, key: str) -> list[AliasRecord]:
        return [self._parse_record(line, key) for line in data.splitlines() if line.strip()]

    @staticmethod
    def _model_key(tag: str) -> str:
        return f"models/{tag}/{MODEL_FILENAME}"

    @staticmethod
    def _meta_key(tag: str) -> str:
        return f"models/{tag}/{META_FILENAME}"

    @staticmethod
    def _alias_key(name: str) -> str:
        return f"aliases/{name}.json"

    @staticmethod
    def _history_key(name: str) -> str:
        return f"aliases/{name}.history.jsonl"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    return f"{where}: {first['msg']}"


def metrics_from_file(path: Path) -> dict[str, Any]:
    """Read ``metrics.json`` (a JSON object) for ``publish``; a bad file is one line."""
    if not path.is_file():
        raise UserError(f"{path}: metrics file not found (run the evaluate stage first)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of metrics")
    return data
