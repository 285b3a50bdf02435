"""The real monitoring path: Prometheus scrapes the real service, evaluates the project's alert
rules and sends to a real Alertmanager, whose route posts to a webhook receiver here.

Two alert conditions are driven through the service itself (no model behind its alias; a swap
to an unknown tag), each seen arriving at the webhook and then resolving. The rules are loaded
with every duration divided by 60 (``compress_time``): what production waits in minutes, this
test waits in seconds; the expressions are the committed ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from machinery.registry import Registry
from tests.monitoring.exprs import (
    EXTERNAL_METRICS,
    dashboard_expressions,
    dashboard_variable_metrics,
    metric_names,
    rule_expressions,
)
from tests.monitoring.stack import (
    RULES,
    TARGET_LABELS,
    Stack,
    compress_time,
    running_stack,
    wait_until,
)
from tests.support.fixture_models import FixtureModel, build_fixture_model

pytestmark = pytest.mark.integration

TOKEN = "admin-" + secrets.token_urlsafe(16)
TAG = "fixture-v1"
# The stack plays prod: its critical alerts page, its warnings go to the team's chat.
PAGER, CHAT = "mlops-pager", "mlops-chat"


@dataclass
class ModelStack:
    stack: Stack
    model: FixtureModel


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStack]:
    """A fresh stack per test (each test sets the registry's state it needs, and the first
    needs a service that starts with no model behind its alias)."""
    root = tmp_path_factory.mktemp("monitoring")
    model = build_fixture_model(root / "model", kind="image")
    with running_stack(root, hashlib.sha256(TOKEN.encode()).hexdigest()) as running:
        yield ModelStack(running, model)


def _post(url: str, body: dict[str, object] | bytes, content_type: str) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _serve(live: ModelStack) -> None:
    """Publish the fixture model and point the service's alias at it."""
    registry = Registry.from_url(str(live.stack.registry))
    registry.publish(TAG, live.model.model_dir, metrics={"accuracy": 1.0})
    registry.move_alias("staging", TAG, by="test")


def _alert(
    stack: Stack, name: str, status: str, after: float, timeout: float, receiver: str
) -> float:
    """Seconds from ``after`` until the webhook got ``name`` in ``status`` through ``receiver``
    (prod's criticals page, everything else goes to chat); checks the alert."""
    note = wait_until(
        lambda: stack.hook.first(name, status, after), timeout, f"{name} {status} at the webhook"
    )
    assert note.body["receiver"] == receiver, note.body
    alert = next(a for a in note.body["alerts"] if a["labels"]["alertname"] == name)
    assert alert["labels"]["namespace"] == TARGET_LABELS["namespace"]
    assert alert["annotations"]["runbook"].startswith("docs/monitoring.md#")
    assert alert["annotations"]["description"]
    return float(note.received - after)


def test_two_alert_conditions_reach_the_webhook_and_resolve(live: ModelStack) -> None:
    stack = live.stack
    timings: dict[str, float] = {}
    # 1. No model behind the alias: the replica is live, not ready, mlops_model_loaded 0.
    timings["no_ready_model_fired"] = _alert(
        stack, "InferenceNoReadyModel", "firing", stack.live_at, timeout=90, receiver=PAGER
    )
    _serve(live)
    fixed = time.monotonic()
    timings["no_ready_model_resolved"] = _alert(
        stack, "InferenceNoReadyModel", "resolved", fixed, timeout=60, receiver=PAGER
    )

    # 2. A swap to a tag that was never published: refused (404), counted, alerted.
    status = _post(
        f"{stack.service.base}/replace_ml_model", {"tag": "never-published"}, "application/json"
    )
    assert status == 404
    failed = time.monotonic()
    timings["swap_failures_fired"] = _alert(
        stack, "InferenceModelSwapFailures", "firing", failed, timeout=60, receiver=CHAT
    )
    note = stack.hook.first("InferenceModelSwapFailures", "firing", failed)
    assert note is not None
    assert note.body["alerts"][0]["labels"]["reason"] == "unknown_tag"
    # The rule looks back 15 minutes (15 s here): it resolves once the failure is older.
    timings["swap_failures_resolved"] = _alert(
        stack, "InferenceModelSwapFailures", "resolved", failed, timeout=90, receiver=CHAT
    )
    print("\ncondition -> webhook seconds (rules time-compressed 60x):", json.dumps(timings))


def test_prometheus_api_reads_back_the_request_counter_and_model_info(live: ModelStack) -> None:
    stack = live.stack
    _serve(live)
    wait_until(lambda: stack.service.answers("/health/ready"), 90, "the service ready")
    base = stack.prometheus.query('sum(mlops_http_requests_total{route="/predict"})')
    before = float(base[0]["value"][1]) if base else 0.0
    for i in range(3):
        assert _post(f"{stack.service.base}/predict", live.model.image(i), "image/png") == 200

    def counted() -> bool:
        result = stack.prometheus.query('sum(mlops_http_requests_total{route="/predict"})')
        return bool(result) and float(result[0]["value"][1]) == before + 3

    wait_until(counted, 30, "Prometheus to count the 3 predictions")
    info = wait_until(
        lambda: stack.prometheus.query("mlops_model_info == 1"), 30, "mlops_model_info"
    )
    assert [series["metric"]["tag"] for series in info] == [TAG]
    labels = info[0]["metric"]
    assert labels["alias"] == "staging" and labels["pod"] == TARGET_LABELS["pod"]


def test_every_expression_uses_only_metrics_the_live_service_exports(live: ModelStack) -> None:
    with urllib.request.urlopen(f"{live.stack.service.base}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    exported: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in text_string_to_metric_families(exposition):
        # HELP/TYPE lines list a family even before its first labelled sample.
        exported.update(family.name + s for s in suffixes.get(family.type, [""]))
    assert "mlops_model_info" in exported and "mlops_http_requests_total" in exported
    used: dict[str, set[str]] = {}
    for where, expr in [*rule_expressions(), *dashboard_expressions()]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    for where, name in dashboard_variable_metrics():
        used.setdefault(name, set()).add(where)
    unknown = {name: sorted(wheres) for name, wheres in used.items() if name not in exported}
    # Series the rules record themselves (tag:mlops_live_accuracy:ratio1h, ...) are no export.
    recorded = {where.removeprefix("rule ") for where, _ in rule_expressions()}
    unknown = {n: w for n, w in unknown.items() if n not in EXTERNAL_METRICS | recorded}
    assert not unknown, f"metric names the service does not export: {unknown}"
    # The check sees what it should: every service family is used somewhere.
    assert {n for n in used if n.startswith("mlops_")} >= {
        "mlops_model_loaded",
        "mlops_drift_samples",
    }


def test_compressed_rules_keep_every_expression() -> None:
    original = RULES.read_text()
    compressed = compress_time(original)
    assert "for: 5s" in compressed and "[5s]" in compressed and "offset 15s" in compressed
    strip = re.compile(r"\d+[smhd]\b")
    assert strip.sub("D", compressed) == strip.sub("D", original)
