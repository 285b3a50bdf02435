"""Alert rules, dashboards and the Alertmanager route, checked by the real tools (promtool,
amtool) and against each other; the live-service checks are in test_alerting.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import generate
from tests.monitoring.exprs import (
    DASHBOARDS,
    REPO,
    RULES,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)

pytestmark = pytest.mark.integration

RULE_TESTS = REPO / "monitoring" / "rules" / "inference.test.yml"
ALERTMANAGER = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
MONITORING_DOC = REPO / "docs" / "monitoring.md"


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    check = _run("promtool", "check", "rules", RULES)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = _run("promtool", "test", "rules", RULE_TESTS)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(a["alert"]) for a in _alerts()}
    assert names - fires == set(), "alerts without a test that fires them"
    assert names - quiet == set(), "alerts without a test that keeps them quiet"


def test_every_alert_is_documented_with_what_to_do() -> None:
    doc = MONITORING_DOC.read_text()
    for alert in _alerts():
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        name = str(alert["alert"])
        assert annotations["runbook"] == f"docs/monitoring.md#{name.lower()}"
        assert f"### {name}" in doc, f"docs/monitoring.md has no section for {name}"
        assert len(str(annotations["description"])) > 80
        assert alert["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression (dashboards' Grafana variables filled in) as a rule."""
    exprs = [*rule_expressions(), *dashboard_expressions()]
    assert len(exprs) > 20
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    good = tmp_path / "exprs.yml"
    good.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    result = _run("promtool", "check", "rules", good)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: one unbalanced parenthesis is refused.
    rules.append({"record": "check:broken", "expr": "sum(rate(mlops_predictions_total[5m])"})
    bad = tmp_path / "broken.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    assert _run("promtool", "check", "rules", bad).returncode != 0


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (namespace, le) (rate(foo_bucket{route="/p", a=~"x|y"}'
        "[5m]))) > 0.5 and on (pod) bar_total offset 1d or count by (tag) (baz == 1) unless "
        'label_replace(qux, "dst", "$1", "src", "(.*)")'
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz", "qux"}


def test_generated_files_are_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert generate.main(["--check"]) == 0, "run: make dashboards"
    # And the check notices a stale copy.
    stale = tmp_path / "dashboards"
    stale.mkdir()
    for path in DASHBOARDS.glob("*.json"):
        (stale / path.name).write_text(path.read_text().replace("MLOps inference", "old"))
    monkeypatch.setattr(generate, "DASHBOARDS", stale)
    assert generate.main(["--check"]) == 1


def test_prometheusrule_carries_the_rules_file() -> None:
    resource = yaml.safe_load(generate.PROMETHEUS_RULE.read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_dashboard_is_grafana_11_json_with_unique_ids_and_the_panels_asked_for() -> None:
    board = json.loads((DASHBOARDS / "mlops-inference.json").read_text())
    assert board["uid"] == "mlops-inference" and board["schemaVersion"] >= 39
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in board["panels"]}
    for wanted in (
        "Request rate",
        "Error ratio",
        "/predict latency",
        "Inference latency",
        "Model served per pod",
        "Swap failures by reason",
        "Predicted classes",
        "Drift (PSI)",
        "Pod CPU",
        "Pod memory",
    ):
        assert wanted in titles
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)) and all(refs), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert [a["name"] for a in board["annotations"]["list"]] == ["Model swaps"]


def test_alertmanager_config_and_route() -> None:
    check = _run("amtool", "check-config", ALERTMANAGER)
    assert check.returncode == 0, check.stdout + check.stderr
    for labels in (
        ["alertname=InferenceNoReadyModel", "severity=critical"],
        ["alertname=InferenceDriftOverThreshold", "severity=warning"],
    ):
        route = _run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert route.stdout.strip() == "mlops-oncall", route.stdout + route.stderr
    other = _run(
        "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", "alertname=Other"
    )
    assert other.stdout.strip() == "default"
