"""Render the kustomizations under k8s/ with the real kubectl (kustomize v5 inside)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
ENVIRONMENTS = ("staging", "prod")
# Every deployable kustomization: the two overlays, the Argo CD bootstrap, and an overlay with
# the optional scale-to-zero component turned on (as docs/deploy.md says to), and prod with the
# optional retrain receiver (docs/retraining.md).
TARGETS = ("staging", "prod", "argocd", "staging+scale-to-zero", "prod+retrain-receiver")
CHECKOV = REPO / ".local" / "checkov" / "bin" / "checkov"
CORE_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}


def tool(name: str) -> str:
    """A tool of this venv (kubectl, kubernetes-validate), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed (make setup)"
    return found


def kustomize(path: Path) -> str:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {path}: {result.stderr}"
    return result.stdout


def render(target: str) -> list[dict[str, Any]]:
    if target == "argocd":
        text = kustomize(K8S / "argocd")
    elif target in ENVIRONMENTS:
        text = kustomize(K8S / "overlays" / target)
    else:
        env, component = target.split("+")
        text = _with_component(env, component)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _with_component(env: str, component: str) -> str:
    """The overlay with ``components: [../../components/<component>]`` added, as a user does."""
    overlay = yaml.safe_load((K8S / "overlays" / env / "kustomization.yaml").read_text())
    return render_overlay(overlay, env, component)


def render_overlay(overlay: dict[str, Any], env: str, component: str | None = None) -> str:
    """Render ``overlay`` (a kustomization) beside the files of ``k8s/overlays/<env>``."""
    if component is not None:
        components = [*overlay.get("components", []), f"../../components/{component}"]
        overlay = {**overlay, "components": components}
    with tempfile.TemporaryDirectory(dir=K8S / "overlays", prefix=f".{env}-") as tmp:
        for name in os.listdir(K8S / "overlays" / env):
            if name != "kustomization.yaml":
                shutil.copy(K8S / "overlays" / env / name, tmp)
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
        return kustomize(Path(tmp))


def is_core(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"] in CORE_GROUPS


def one(docs: list[dict[str, Any]], kind: str, name_prefix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind} {name_prefix}*, got {len(found)}"
    return found[0]


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6}
_SUFFIXES |= {"G": 10**9, "T": 10**12, "": 1}


def quantity(text: str | int) -> int:
    """A Kubernetes resource quantity in bytes ("1Gi", "64Mi", "500M"); whole numbers only."""
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T|)", str(text))
    assert match, f"not a quantity this check understands: {text!r}"
    return int(match[1]) * _SUFFIXES[match[2]]
