"""Model registry: immutable experiment tags and movable aliases, on S3 or a local directory.

``from machinery.registry import Registry``; see ``registry.py`` for the layout.
"""

from machinery.registry.errors import (
    AliasNotFound,
    IntegrityError,
    InvalidMeta,
    InvalidModelDir,
    InvalidName,
    ObjectTooLarge,
    RegistryError,
    RegistryUnavailable,
    TagExists,
    TagNotFound,
)
from machinery.registry.records import AliasRecord, InvalidEntry, Listing, ModelMeta
from machinery.registry.registry import (
    DEFAULT_REGISTRY_URL,
    REGISTRY_URL_ENV,
    Registry,
    registry_url_from_env,
)

__all__ = [
    "AliasNotFound",
    "AliasRecord",
    "DEFAULT_REGISTRY_URL",
    "IntegrityError",
    "InvalidMeta",
    "InvalidModelDir",
    "InvalidEntry",
    "Listing",
    "InvalidName",
    "ObjectTooLarge",
    "ModelMeta",
    "REGISTRY_URL_ENV",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "TagExists",
    "TagNotFound",
    "registry_url_from_env",
]
