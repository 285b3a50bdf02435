"""What can go wrong with the registry, each as one readable line.

``RegistryError`` is a ``UserError``, so the CLI prints it as one line and exits non-zero; the
service maps the subclasses to HTTP statuses.
"""

from __future__ import annotations

from machinery.errors import UserError


class RegistryError(UserError):
    """Base of every registry failure; ``str(exc)`` is one readable line."""


class InvalidName(RegistryError):
    """A tag or alias name that is not git-tag-like (and could escape the registry root)."""


class InvalidModelDir(RegistryError):
    """A model directory that cannot be published: missing files, card that does not match."""


class TagNotFound(RegistryError):
    pass


class InvalidMeta(RegistryError):
    """A tag whose ``meta.json`` cannot be read as one: that tag is unusable, the rest are fine."""


class TagExists(RegistryError):
    """Publishing an existing tag with different bytes: tags are immutable."""


class AliasNotFound(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    """S3 unreachable, credentials refused, timeouts, missing bucket, unreadable directory."""

    exit_code = 3


class ObjectTooLarge(RegistryError):
    """A stored object over the size a reader allows (the service's model cache cap)."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"{key} is {size} bytes, over the limit of {limit} bytes")
        self.key = key
        self.size = size
        self.limit = limit


class IntegrityError(RegistryError):
    """Stored bytes whose sha256 is not the one recorded in ``meta.json``."""
