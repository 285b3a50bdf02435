"""Validate custom resources against their projects' published CRDs, strictly.

The schemas are the CRDs' own ``openAPIV3Schema`` (vendored in tests/k8s/schemas/ by
vendor_crds.py). A structural schema lets the API server prune unknown fields silently, so a
typo (``scrapeTimout``) would deploy as "no timeout"; ``kubectl apply`` with strict field
validation refuses it instead. Closing every object schema (``additionalProperties: false``
wherever the CRD lists properties and does not say ``x-kubernetes-preserve-unknown-fields``)
makes this check refuse it too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).parent / "schemas"


@cache
def _index() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> closed JSON schema, for every vendored CRD version."""
    index = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version, schema in crd["versions"].items():
            index[(f"{crd['group']}/{version}", crd["kind"])] = closed(schema)
    return index


def kinds() -> set[tuple[str, str]]:
    return set(_index())


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every object that lists its properties refusing any other."""
    out = dict(schema)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: closed(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = closed(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [closed(s) for s in out[key]]
    return out


def errors(doc: dict[str, Any]) -> list[str]:
    """Every violation of ``doc``'s CRD schema, as 'path: message'; an unknown kind is one."""
    schema = _index().get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if schema is None:
        return [f"no vendored CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(doc)
    )
