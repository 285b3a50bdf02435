"""Read and set the ``inference`` entry of an overlay's ``images:``, keeping comments and order.

The contract with ``k8s/`` (DESIGN.md, "The overlay contract"): ``images:`` holds an entry named
``inference``; the bump sets its ``newName`` and ``digest`` and nothing else (a ``newTag`` left
from a hand edit is dropped, since kustomize would otherwise combine the two).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machinery.errors import UserError

IMAGE_ENTRY = "inference"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")


@dataclass(frozen=True)
class ImageRef:
    name: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}"

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """``HOST/PATH@sha256:…`` (a tag between name and digest is dropped)."""
        name, sep, digest = ref.strip().partition("@")
        if not sep:
            raise UserError(f"image {ref!r}: expected NAME@sha256:<64 hex> (pin by digest)")
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        return cls.checked(name, digest)

    @classmethod
    def checked(cls, name: str, digest: str) -> ImageRef:
        if not NAME.fullmatch(name):
            raise UserError(f"image name {name!r}: expected HOST[:PORT]/PATH in lowercase")
        if not DIGEST.fullmatch(digest):
            raise UserError(f"image digest {digest!r}: expected sha256:<64 hex digits>")
        return cls(name, digest)


def overlay_path(root: Path, env: str) -> Path:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", env):
        raise UserError(f"environment {env!r}: use lowercase letters, digits and '-'")
    return root / "k8s" / "overlays" / env / "kustomization.yaml"


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: no such overlay (see docs/deploy.md for the layout)")
    try:
        doc = _yaml().load(path.read_text())
    except Exception as exc:  # noqa: BLE001 - ruamel's errors have no common base worth naming
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a kustomization (expected a mapping)")
    return doc


def _entry(doc: Any, path: Path) -> Any:
    for item in doc.get("images") or []:
        if isinstance(item, dict) and item.get("name") == IMAGE_ENTRY:
            return item
    raise UserError(f"{path}: no images entry named {IMAGE_ENTRY!r} (the overlay contract)")


def read_image(path: Path) -> ImageRef | None:
    """The pinned image, or ``None`` while the overlay pins none by digest yet."""
    item = _entry(_load(path), path)
    name, digest = item.get("newName"), item.get("digest")
    if not name or not digest:
        return None
    return ImageRef(str(name), str(digest))


def set_image(path: Path, ref: ImageRef) -> bool:
    """Pin ``ref`` in the overlay; ``False`` (file untouched) when it is pinned already."""
    doc = _load(path)
    item = _entry(doc, path)
    if (
        item.get("newName") == ref.name
        and item.get("digest") == ref.digest
        and "newTag" not in item
    ):
        return False
    item["newName"] = ref.name
    item["digest"] = ref.digest
    if "newTag" in item:
        del item["newTag"]
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    path.write_text(buf.getvalue())
    return True
