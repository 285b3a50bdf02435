"""Every PromQL expression the project ships (rules, dashboards) and the metric names in it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from monitoring.dashboard_inference import CLUSTER_METRICS

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "rules" / "inference.rules.yml"
ENVS = REPO / "monitoring" / "envs"

# Grafana's variables are not PromQL; give each a value of the type it stands for.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$namespace": "mlops-staging",
}
# Names the service does not export: the cluster's (cAdvisor, in the dashboards) and the
# series Prometheus itself writes for every target (`up`, in the target alerts).
EXTERNAL_METRICS = CLUSTER_METRICS | {"up"}

_KEYWORDS = {
    # aggregations, set and modifier keywords: identifiers that are never metric names
    *"sum min max avg group stddev stdvar count count_values bottomk topk quantile".split(),
    *"by without on ignoring group_left group_right and or unless offset bool atan2".split(),
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")
# A metric name with its matchers, if any (strings inside the braces may hold any character).
_SELECTOR = re.compile(
    r'(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])\s*(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})?(\s*\()?'
)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (in braces or by/on lists), durations or numbers."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(r"\1 ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """``(metric name, "{matchers}" or "")`` for every vector selector in ``expr``."""
    text = _LABEL_LIST.sub(r"\1 ", expr)
    found = []
    for match in _SELECTOR.finditer(text):
        name, braces, call = match.group(1), match.group(2) or "", match.group(3)
        if not call and name.lower() not in _KEYWORDS:
            found.append((name, braces))
    return found


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def rule_expressions(path: Path = RULES) -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


def dashboard_files() -> list[Path]:
    return sorted(ENVS.glob("*/*.json"))


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield f"{path.name}: {panel['title']}", grafana_to_promql(target["expr"])
        for annotation in board.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                yield f"{path.name}: annotation {annotation['name']}", grafana_to_promql(
                    annotation["expr"]
                )


def dashboard_variable_metrics() -> Iterator[tuple[str, str]]:
    """``label_values(metric, label)`` queries of the dashboards' variables."""
    for path in dashboard_files():
        for var in json.loads(path.read_text()).get("templating", {}).get("list", []):
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            found = re.fullmatch(r"label_values\((\w+)\s*,\s*\w+\)", text)
            if var.get("type") == "query":
                assert found, f"{path.name}: variable {var['name']}: unexpected query {text!r}"
                yield f"{path.name}: variable {var['name']}", found.group(1)


def _panels(panels: list[dict[str, object]]) -> Iterator[dict[str, object]]:
    for panel in panels:
        yield panel
        inner = panel.get("panels")
        if isinstance(inner, list):
            yield from _panels(inner)
