"""Live accuracy end to end: ground truth posted to the real service's ``/feedback`` lowers the
live accuracy that a real Prometheus computes with prod's committed rules (time-compressed 60x:
the one-hour window is 60 s, ``for: 10m`` is 10 s), and ``LiveAccuracyBelowCard`` goes pending,
then firing, then reaches the webhook through Alertmanager. A few wrong labels alone do not.
The seconds from the bad feedback to each step are printed (``-s``) for docs/monitoring.md.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator

import pytest

from machinery.registry import Registry
from tests.monitoring.stack import Stack, running_stack, send_wrong_feedback, wait_until
from tests.support.fixture_models import build_fixture_model

pytestmark = pytest.mark.integration

TOKEN = "admin-" + secrets.token_urlsafe(16)
TAG = "fixture-v1"
ALERT = "LiveAccuracyBelowCard"
CHAT = "mlops-chat"  # prod's warnings go to the team's chat


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("feedback-alert")
    model = build_fixture_model(root / "model", kind="tabular")
    with running_stack(root, hashlib.sha256(TOKEN.encode()).hexdigest()) as running:
        registry = Registry.from_url(str(running.registry))
        registry.publish(TAG, model.model_dir, metrics={"accuracy": 0.96})
        registry.move_alias("staging", TAG, by="test")
        wait_until(lambda: running.service.answers("/health/ready"), 90, "the service ready")
        yield running


def _feedback(stack: Stack, wrong: int) -> None:
    send_wrong_feedback(stack.service, TOKEN, TAG, wrong)


def _value(stack: Stack, promql: str) -> float | None:
    result = stack.prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def _state(stack: Stack) -> str | None:
    alerts = stack.prometheus.query(f'ALERTS{{alertname="{ALERT}", tag="{TAG}"}}')
    return str(alerts[0]["metric"]["alertstate"]) if alerts else None


def test_bad_feedback_fires_live_accuracy_below_card_but_few_labels_do_not(stack: Stack) -> None:
    # The served tag's counter is scraped at 0 before any feedback, so increase() counts all.
    wait_until(
        lambda: _value(stack, f'mlops_feedback_total{{tag="{TAG}"}}') == 0, 30, "a zero counter"
    )
    # 1. Twenty labels, all wrong: live accuracy 0, yet under the 100-label floor.
    _feedback(stack, 20)
    wait_until(
        lambda: (_value(stack, f'tag:mlops_feedback:increase1h{{tag="{TAG}"}}') or 0) >= 15,
        30,
        "Prometheus to count the first labels",
    )
    assert _value(stack, f'mlops_model_card_accuracy{{tag="{TAG}"}}') == 0.96
    assert _value(stack, f'tag:mlops_live_accuracy:ratio1h{{tag="{TAG}"}}') == 0.0
    upper = _value(stack, f'tag:mlops_live_accuracy_wilson_upper:1h{{tag="{TAG}"}}')
    assert upper is not None and upper < 0.91  # bad enough: only the floor keeps it quiet
    for _ in range(10):  # several rule evaluations (one a second): never even pending
        assert _state(stack) is None
        time.sleep(0.5)

    # 2. Two hundred more wrong labels: the floor is passed, the alert goes pending, then fires.
    sent = time.monotonic()
    _feedback(stack, 200)
    timings = {}
    for state, timeout in (("pending", 30), ("firing", 60)):
        wait_until(lambda: _state(stack) == state, timeout, f"{ALERT} {state}")
        timings[state] = round(time.monotonic() - sent, 1)
    note = wait_until(lambda: stack.hook.first(ALERT, "firing", sent), 60, "the webhook")
    timings["webhook"] = round(note.received - sent, 1)
    assert note.body["receiver"] == CHAT
    (alert,) = [a for a in note.body["alerts"] if a["labels"]["alertname"] == ALERT]
    assert alert["labels"]["tag"] == TAG and alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook"] == "docs/monitoring.md#liveaccuracybelowcard"
    assert f"live accuracy of {TAG} is below its card's" in alert["annotations"]["summary"]
    print("\nbad feedback -> LiveAccuracyBelowCard seconds (rules time-compressed 60x):", timings)
