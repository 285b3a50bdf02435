"""The deployment environments, read from the overlays: the generator renders each one's rules
and dashboard from them, so a renamed namespace or a new overlay cannot drift from monitoring/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OVERLAYS = REPO / "k8s" / "overlays"
SCALE_TO_ZERO = "scale-to-zero"


@dataclass(frozen=True)
class Environment:
    name: str  # the overlay's directory name: staging, prod, ...
    namespace: str  # the overlay's `namespace:`
    scale_to_zero: bool  # the overlay turns on k8s/components/scale-to-zero (zero pods is fine)


def environments(overlays: Path | None = None) -> list[Environment]:
    """Every overlay under ``overlays`` (default k8s/overlays; hidden directories are scratch
    copies, left out)."""
    overlays = OVERLAYS if overlays is None else overlays
    found = []
    for path in sorted(overlays.glob("*/kustomization.yaml")):
        if path.parent.name.startswith("."):
            continue
        overlay = yaml.safe_load(path.read_text()) or {}
        namespace = overlay.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"{path}: no `namespace:`; every overlay deploys to its own")
        components = overlay.get("components") or []
        found.append(
            Environment(
                name=path.parent.name,
                namespace=namespace,
                scale_to_zero=any(Path(c).name == SCALE_TO_ZERO for c in components),
            )
        )
    if not found:
        raise ValueError(f"no overlay under {overlays}")
    return found
