"""Alert rules, dashboards and the Alertmanager route, checked by the real tools (promtool,
amtool) and against each other; the live-service checks are in test_alerting.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import environments as environments_module
from monitoring import generate, rules
from monitoring.environments import environments
from tests.monitoring.exprs import (
    ENVS,
    REPO,
    RULES,
    dashboard_expressions,
    dashboard_files,
    metric_names,
    rule_expressions,
)

pytestmark = pytest.mark.integration

RULE_TESTS = REPO / "monitoring" / "rules" / "inference.test.yml"
MONITORING_DOC = REPO / "docs" / "monitoring.md"


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict[str, object]]:
    """The alerting rules (the recording rules they read are checked through them)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    env_rules = [ENVS / env.name / generate.RULES_FILE for env in environments()]
    check = _run("promtool", "check", "rules", RULES, *env_rules)
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
    env_rules = [ENVS / env.name / generate.RULES_FILE for env in environments()]
    exprs = [*rule_expressions(), *dashboard_expressions()]
    exprs += [expr for path in env_rules for expr in rule_expressions(path)]
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
    # And the check notices a stale copy, and a file no environment produces any more.
    stale = tmp_path / "envs"
    shutil.copytree(ENVS, stale)
    monkeypatch.setattr(generate, "ENVS", stale)
    assert generate.main(["--check"]) == 0
    board = next(stale.glob("*/*.json"))
    board.write_text(board.read_text().replace("MLOps inference", "old"))
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0 and generate.main(["--check"]) == 0
    (stale / "gone").mkdir()
    (stale / "gone" / "prometheusrule.yaml").write_text("kind: PrometheusRule\n")
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0 and not (stale / "gone").exists()


def test_an_overlay_without_namespace_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "kustomization.yaml").write_text("resources: [../../base]\n")
    monkeypatch.setattr(environments_module, "OVERLAYS", tmp_path)
    assert generate.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no `namespace:`" in err and len(err.splitlines()) == 1


def test_prometheusrule_carries_each_envs_rules_file() -> None:
    for env in environments():
        folder = ENVS / env.name
        resource = yaml.safe_load((folder / generate.PROMETHEUS_RULE).read_text())
        assert resource["kind"] == "PrometheusRule"
        plain = yaml.safe_load((folder / generate.RULES_FILE).read_text())["groups"]
        assert resource["spec"]["groups"] == plain == rules.scoped_groups(env)


def test_dashboards_are_unique_per_environment_and_versioned() -> None:
    """Grafana's sidecar writes every ConfigMap key into one folder and Grafana keys boards by
    uid: two environments must differ in both, and in the title a person picks from."""
    seen: dict[str, set[str]] = {"file": set(), "uid": set(), "title": set(), "configmap": set()}
    envs = environments()
    for env in envs:
        kustomization = yaml.safe_load((ENVS / env.name / "kustomization.yaml").read_text())
        (generator,) = kustomization["configMapGenerator"]
        (file_name,) = generator["files"]
        board = json.loads((ENVS / env.name / file_name).read_text())
        assert env.name in file_name and env.name in board["uid"] and env.name in board["title"]
        assert len(board["uid"]) <= 40
        assert isinstance(board["version"], int) and board["version"] >= 1
        (namespace,) = [v for v in board["templating"]["list"] if v["name"] == "namespace"]
        assert namespace["type"] == "constant" and namespace["query"] == env.namespace
        for key, value in (
            ("file", file_name),
            ("uid", board["uid"]),
            ("title", board["title"]),
            ("configmap", generator["name"]),
        ):
            seen[key].add(value)
    assert all(len(values) == len(envs) for values in seen.values()), seen
    assert len(envs) >= 2


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_grafana_11_json_with_unique_ids_and_the_panels_asked_for(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 39
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
        "Live accuracy vs card",
        "Feedback volume",
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
