"""The registry in a local directory: the embedded default, no server needed.

Write-once uses ``os.link`` of a finished temporary file (fails if the name exists), so a
reader never sees half a file and two publishers cannot both win. Compare-and-swap takes an
exclusive ``flock`` on ``<root>/.lock``, which serializes writers across processes and threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from machinery.modelcard import sha256_file
from machinery.registry.errors import ObjectTooLarge, RegistryUnavailable
from machinery.registry.store import Blob

LOCK_NAME = ".lock"


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def create_root(self) -> None:
        with self._os_errors():
            self.root.mkdir(parents=True, exist_ok=True)

    def read(self, key: str) -> Blob | None:
        with self._os_errors():
            try:
                data = self._path(key).read_bytes()
            except FileNotFoundError:
                self._root_must_exist()
                return None
        return Blob(data=data, version=hashlib.sha256(data).hexdigest())

    def write(self, key: str, data: bytes, *, expect: str | None) -> bool:
        path = self._path(key)
        with self._os_errors(), self._locked():
            current = self.read(key)
            if (current is None) != (expect is None):
                return False
            if current is not None and current.version != expect:
                return False
            tmp = self._temp_for(path)
            try:
                with tmp.open("wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def put_file_once(self, key: str, path: Path, sha256: str) -> bool:
        target = self._path(key)
        with self._os_errors():
            tmp = self._temp_for(target)
            try:
                shutil.copyfile(path, tmp)
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return False
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def stored_sha256(self, key: str) -> str | None:
        with self._os_errors():
            try:
                return sha256_file(self._path(key))
            except FileNotFoundError:
                self._root_must_exist()
                return None

    def fetch_file(self, key: str, dest: Path, max_bytes: int | None = None) -> bool:
        with self._os_errors():
            try:
                if max_bytes is not None:
                    size = self._path(key).stat().st_size
                    if size > max_bytes:
                        raise ObjectTooLarge(key, size, max_bytes)
                shutil.copyfile(self._path(key), dest)
            except FileNotFoundError:
                if not dest.parent.is_dir():
                    raise
                self._root_must_exist()
                return False
        return True

    def children(self, prefix: str) -> list[str]:
        with self._os_errors():
            try:
                names = os.listdir(self._path(prefix))
            except FileNotFoundError:
                self._root_must_exist()
                return []
        # Dot files are locks and unfinished temporaries, never part of the layout.
        return sorted(n for n in names if not n.startswith("."))

    def _root_must_exist(self) -> None:
        """A missing key in a missing root is a registry that is gone (a deleted or unmounted
        volume), not an empty one: the service answers 503, never "not published"."""
        if not self.root.is_dir():
            raise RegistryUnavailable(
                f"registry {self.root} does not exist (deleted or not mounted?); "
                "publishing a model creates it"
            )

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _temp_for(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._root_must_exist()
        with (self.root / LOCK_NAME).open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            where = exc.filename or self.root
            raise RegistryUnavailable(
                f"registry {self.root}: cannot use {where} ({exc.strerror or exc})"
            ) from None
