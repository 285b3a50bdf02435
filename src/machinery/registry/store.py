"""The few storage operations the registry needs, with conditional writes.

Two backends implement them: a local directory (the embedded default) and S3. Keys are
``/``-separated paths relative to the registry root, built only from validated names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Blob:
    """A small object's bytes and an opaque version (S3 ETag, sha256 locally) for ``write``."""

    data: bytes
    version: str


class Store(Protocol):
    @property
    def location(self) -> str:
        """Where the registry lives, for messages: ``s3://bucket/prefix`` or a directory."""
        ...

    def create_root(self) -> None:
        """Make the registry's root exist (publish does this; readers never do)."""
        ...

    def read(self, key: str) -> Blob | None:
        """The object at ``key``, or ``None`` when there is none. A root that does not exist
        raises ``RegistryUnavailable``: a deleted registry must never look empty."""
        ...

    def write(self, key: str, data: bytes, *, expect: str | None) -> bool:
        """Compare-and-swap: write only if ``key`` is absent (``expect=None``) or still at
        version ``expect``. ``False`` when that precondition failed; nothing was written."""
        ...

    def put_file_once(self, key: str, path: Path, sha256: str) -> bool:
        """Upload ``path`` unless ``key`` exists (write-once); ``False`` when it existed."""
        ...

    def stored_sha256(self, key: str) -> str | None:
        """sha256 of the bytes stored at ``key`` (``None`` when absent)."""
        ...

    def fetch_file(self, key: str, dest: Path, max_bytes: int | None = None) -> bool:
        """Copy ``key`` to ``dest``; ``False`` when ``key`` is absent. Over ``max_bytes`` it
        raises ``ObjectTooLarge`` before writing anything."""
        ...

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (files and "directories"), sorted."""
        ...
