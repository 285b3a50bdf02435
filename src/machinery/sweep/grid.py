"""The grid of a sweep: ``-S key=v1,v2`` options expanded into points, pruned, validated.

The pruning rule (docs/sweeps.md): a setting whose value names one of its sibling sections
(``train.estimator: svc`` next to the sections ``train.svc`` and ``train.logreg``) selects
among them, so a key ``a.G.k`` inside such a section applies only to the points where that
setting equals ``G``. In the other points the key keeps its value from
``params.yaml``, and points that differ only in keys that do not apply are run once.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

import yaml

from machinery.errors import UserError

DEFAULT_MAX_POINTS = 64
_MISSING = object()


@dataclass(frozen=True)
class Point:
    """One combination: the grid keys that apply to it, in the order they were given."""

    index: int
    values: dict[str, Any]
    name: str

    def params(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` (params.yaml) with this point's values set."""
        out = copy.deepcopy(base)
        for key, value in self.values.items():
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                node = node[part]
            node[leaf] = value
        return out


def parse_value(text: str) -> Any:
    """A value as DVC's ``-S`` reads it: YAML scalars (``10`` an int, ``1e-3`` a float)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # A float written as 1e-3 is a string to YAML 1.1: read it as the number the user meant.
    if isinstance(value, str):
        try:
            return float(value) if re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", value) else value
        except ValueError:
            return value
    return value


def parse_options(options: list[str]) -> dict[str, list[Any]]:
    """``['train.C=1,10', ...]`` → ``{'train.C': [1, 10]}`` (keys in the order given)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"-S {option!r}: expected KEY=VALUE[,VALUE...]")
        if key in grid:
            raise UserError(f"-S {key}: given twice (list its values in one -S)")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise UserError(f"-S {key}: no values (the grid would be empty)")
        unique: list[Any] = []
        for value in parsed:
            if value not in unique:
                unique.append(value)
        grid[key] = unique
    if not grid:
        raise UserError("empty grid: give at least one -S KEY=VALUE[,VALUE...]")
    return grid


def lookup(params: dict[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def check_keys(grid: dict[str, list[Any]], params: dict[str, Any], file: str) -> None:
    for key in grid:
        value = lookup(params, key)
        if value is _MISSING:
            raise UserError(f"-S {key}: unknown key (not in {file})")
        if isinstance(value, (dict, list)):
            raise UserError(f"-S {key}: a section in {file}, not a value")


def selector(key: str, grid: dict[str, list[Any]], params: dict[str, Any]) -> str | None:
    """The sibling setting that chooses the section ``key`` lives in, if any (see the module)."""
    parts = key.split(".")
    if len(parts) < 3:
        return None
    parent, group = ".".join(parts[:-2]), parts[-2]
    siblings = lookup(params, parent)
    if not isinstance(siblings, dict):
        return None
    sections = {n for n, v in siblings.items() if isinstance(v, dict)}
    if group not in sections:
        return None
    for name, value in siblings.items():
        full = f"{parent}.{name}" if parent else name
        if isinstance(value, dict):
            continue
        choices = [value, *grid.get(full, [])]
        if any(str(c) in sections for c in choices):
            return full
    return None


def expand(
    grid: dict[str, list[Any]], params: dict[str, Any], max_points: int = DEFAULT_MAX_POINTS
) -> list[Point]:
    """Every combination, pruned by the rule above; refused when over ``max_points``."""
    selectors = {k: selector(k, grid, params) for k in grid}
    group = {k: k.split(".")[-2] for k in grid if selectors[k]}
    seen: set[str] = set()
    points: list[Point] = []
    applied: set[str] = set()
    for combo in itertools.product(*grid.values()):
        full = dict(zip(grid, combo))
        values = {}
        for key, value in full.items():
            sel = selectors[key]
            if sel is not None:
                chosen = full[sel] if sel in full else lookup(params, sel)
                if str(chosen) != group[key]:
                    continue
            values[key] = value
            applied.add(key)
        marker = repr(sorted(values.items(), key=lambda kv: kv[0]))
        if marker in seen:
            continue
        seen.add(marker)
        points.append(Point(len(points), values, point_name(values)))
    never = [k for k in grid if k not in applied]
    if never:
        key = never[0]
        raise UserError(
            f"-S {key}: never applies ({selectors[key]} is never {group[key]} in this grid)"
        )
    if len(points) > max_points:
        raise UserError(
            f"the grid has {len(points)} points, more than the maximum {max_points}"
            " (--max-points, or sweep.max_points in params.yaml)"
        )
    return points


def point_name(values: dict[str, Any]) -> str:
    """The experiment's name: each key without the section all keys share, then its value
    (``estimator-svc_svc.C-10``); only characters a git ref and a shell take as they are."""
    keys = list(values)
    heads = {k.split(".", 1)[0] for k in keys}
    strip = len(heads) == 1 and all("." in k for k in keys)
    parts = []
    for key in keys:
        short = key.split(".", 1)[1] if strip else key
        parts.append(f"{short}-{values[key]}")
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts)).strip(".-")
    return re.sub(r"\.{2,}", ".", name) or "point"
