"""Each environment's alerts see only its own namespace, and only prod's criticals page.

Checked with the real tools: promtool runs the committed unit tests against both environments'
rules loaded side by side (one env's series must fire only that env's alerts), amtool resolves
the route for each namespace and severity, and kubectl kustomize renders each overlay.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import generate, rules
from monitoring.environments import Environment, environments
from tests.k8s.render import K8S, kustomize
from tests.monitoring.exprs import ENVS, REPO, RULES, rule_expressions, selectors

pytestmark = pytest.mark.integration

RULE_TESTS = REPO / "monitoring" / "rules" / "inference.test.yml"
ALERTMANAGER = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
PAGER, CHAT, RETRAIN = "mlops-pager", "mlops-chat", "mlops-retrain"
_NAMESPACE_MATCHER = re.compile(r'namespace\s*=\s*"([^"]*)"')


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)


def _env(name: str) -> Environment:
    return next(env for env in environments() if env.name == name)


def _unscoped(expr: str, namespace: str) -> list[str]:
    """Selectors of ``expr`` without exactly the matcher ``namespace="<namespace>"``."""
    return [
        name + braces
        for name, braces in selectors(expr)
        if _NAMESPACE_MATCHER.findall(braces) != [namespace]
        or f'namespace="{namespace}"' not in braces
    ]


def test_every_selector_of_every_env_selects_only_its_namespace() -> None:
    for where, expr in rule_expressions(RULES):
        assert not _unscoped(expr, "$namespace"), f"{where}: write {rules.PLACEHOLDER}"
    for env in environments():
        path = ENVS / env.name / generate.RULES_FILE
        for where, expr in rule_expressions(path):
            assert not _unscoped(expr, env.namespace), f"{path}: {where}"
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:  # recording rules keep the namespace of their selectors
                    assert rule["labels"]["namespace"] == env.namespace, rule["alert"]
    # The check can fail: an unscoped selector, or another env's namespace, is caught.
    assert _unscoped('sum(up{job="x"}) + up{namespace="mlops-prod"}', "mlops-staging") == [
        'up{job="x"}',
        'up{namespace="mlops-prod"}',
    ]
    with pytest.raises(ValueError, match="namespace="):
        text = RULES.read_text()
        bad = text.replace(
            'expr: up{job="inference", namespace="$namespace"}', 'expr: up{namespace=~"$namespace"}'
        )
        assert bad != text
        scratch = ENVS.parent / ".unscoped.rules.yml"
        try:
            scratch.write_text(bad)
            rules.scoped_groups(_env("prod"), scratch)
        finally:
            scratch.unlink()


def _swap(text: str, one: str, other: str) -> str:
    return text.replace(one, "\0").replace(other, one).replace("\0", other)


@pytest.mark.parametrize("data_env", ["prod", "staging"])
def test_one_envs_series_fire_only_that_envs_alerts(data_env: str, tmp_path: Path) -> None:
    """The committed promtool cases (written with prod's series) run with every environment's
    rules loaded at once; the series of ``data_env`` must raise exactly the expected alerts, none
    from another env's rules. The other env has one healthy replica, so its own target alerts
    stay quiet for their own reason."""
    prod, data = _env("prod"), _env(data_env)
    others = [env for env in environments() if env.name != data_env]
    text = RULE_TESTS.read_text()
    if data != prod:
        text = _swap(text, prod.namespace, data.namespace)
    cases: dict[str, Any] = yaml.safe_load(text)
    files = []
    for env in environments():
        # Scoping is the question here, not scale-to-zero: every env gets the full rule set.
        full = Environment(env.name, env.namespace, scale_to_zero=False)
        path = tmp_path / f"{env.name}.rules.yml"
        path.write_text(rules.dump({"groups": rules.scoped_groups(full)}))
        files.append(str(path))
    cases["rule_files"] = files
    for case in cases["tests"]:
        for number, env in enumerate(others):
            series = f'up{{job="inference",namespace="{env.namespace}",pod="other-{number}"}}'
            case["input_series"].append({"series": series, "values": "1x2000"})
    derived = tmp_path / "scoping.test.yml"
    derived.write_text(yaml.safe_dump(cases, sort_keys=False))
    result = _run("promtool", "test", "rules", derived)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_scale_to_zero_overlay_ships_no_absent_alert(tmp_path: Path) -> None:
    """Zero pods is the idle state of an env that turns on the scale-to-zero component: its
    rules keep the scrape-failure alert but drop the no-replica one; the others keep both."""
    for name, components in (("idle", ["../../components/scale-to-zero"]), ("busy", [])):
        (tmp_path / name).mkdir()
        overlay = {"namespace": f"mlops-{name}", "resources": ["../../base"]}
        if components:
            overlay["components"] = components
        (tmp_path / name / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    by_name = {env.name: env for env in environments(tmp_path)}
    assert {name: env.scale_to_zero for name, env in by_name.items()} == {
        "idle": True,
        "busy": False,
    }
    for name, absent_expected in (("idle", False), ("busy", True)):
        groups = rules.scoped_groups(by_name[name])
        alerts = {r.get("alert") for g in groups for r in g["rules"]}
        assert "InferenceTargetDown" in alerts
        assert ("InferenceAbsent" in alerts) is absent_expected, name


@pytest.mark.parametrize("env_name", ["staging", "prod"])
def test_rendered_overlay_ships_rules_and_dashboard_of_its_own_namespace(env_name: str) -> None:
    env = _env(env_name)
    docs = [d for d in yaml.safe_load_all(kustomize(K8S / "overlays" / env.name)) if d]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == env.namespace
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert set(_NAMESPACE_MATCHER.findall("\n".join(exprs))) == {env.namespace}
    assert all(not _unscoped(expr, env.namespace) for expr in exprs)
    (board,) = [d for d in docs if d["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert board["metadata"]["name"].startswith(f"dashboard-inference-{env.name}-")
    assert list(board["data"]) == [f"mlops-inference-{env.name}.json"]


def _route(*labels: str) -> str:
    result = _run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_alertmanager_pages_for_prod_criticals_only() -> None:
    check = _run("amtool", "check-config", ALERTMANAGER)
    assert check.returncode == 0, check.stdout + check.stderr
    prod, staging = _env("prod").namespace, _env("staging").namespace
    expected = {
        ("InferenceAbsent", prod, "critical"): PAGER,
        ("InferenceNoReadyModel", prod, "critical"): PAGER,
        ("InferenceTargetDown", prod, "warning"): CHAT,
        # Prod's drift also starts a retrain run (docs/retraining.md), then goes on to chat.
        ("InferenceDriftOverThreshold", prod, "warning"): f"{RETRAIN},{CHAT}",
        ("LiveAccuracyBelowCard", prod, "warning"): f"{RETRAIN},{CHAT}",
        ("InferenceDriftOverThreshold", staging, "warning"): CHAT,
        ("InferenceAbsent", staging, "critical"): CHAT,
        ("InferenceNoReadyModel", staging, "critical"): CHAT,
        ("InferenceTargetDown", staging, "warning"): CHAT,
        # A namespace the route does not name never pages.
        ("InferenceNoReadyModel", "mlops-other", "critical"): CHAT,
    }
    for (alert, namespace, severity), receiver in expected.items():
        got = _route(f"alertname={alert}", f"namespace={namespace}", f"severity={severity}")
        assert got == receiver, (alert, namespace, severity, got)
    assert _route("alertname=Other", f"namespace={prod}", "severity=critical") == "default"
