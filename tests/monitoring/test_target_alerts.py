"""The service stops being scraped: the target-down and absent alerts reach Alertmanager.

A real Prometheus scrapes the real service (targets from a file, as Kubernetes discovery hands
them over) with prod's committed rules, time-compressed 60x (``for: 5m`` waits 5 s), and sends
to a real Alertmanager with the project's route. Each test runs its own stack, since each ends
its service or its target. The seconds from the fault to the alert at Alertmanager and at the
webhook are printed (``-s``) for docs/monitoring.md.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.monitoring.stack import Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

TOKEN_SHA256 = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
PAGER, CHAT = "mlops-pager", "mlops-chat"


@pytest.fixture
def stack(tmp_path: Any) -> Iterator[Stack]:
    with running_stack(tmp_path, TOKEN_SHA256) as running:
        # Scraped and up before the fault, or "absent" would only mean "not scraped yet"; and an
        # InferenceAbsent of the start-up (the service starts after Prometheus) has resolved.
        wait_until(lambda: running.prometheus.query(f"{UP} == 1"), 30, "a first scrape")
        wait_until(lambda: not _firing_or_pending(running), 30, "start-up alerts to resolve")
        wait_until(lambda: not running.alertmanager.alerts("InferenceAbsent"), 30, "AM quiet")
        yield running


UP = 'up{job="inference"}'


def _firing_or_pending(stack: Stack) -> list[dict[str, Any]]:
    return stack.prometheus.query('ALERTS{alertname=~"InferenceAbsent|InferenceTargetDown"}')


def _active(stack: Stack, alertname: str, since: float) -> dict[str, Any] | None:
    """The alert as Alertmanager holds it (active or suppressed), if it fired after ``since``
    (wall-clock seconds)."""
    for alert in stack.alertmanager.alerts(alertname):
        started = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
        if started.timestamp() >= since:
            return alert
    return None


def test_stopped_service_fires_absent_which_pages_and_inhibits_target_down(stack: Stack) -> None:
    wall = time.time()
    stack.service.stop()
    stopped = time.monotonic()
    absent = wait_until(
        lambda: _active(stack, "InferenceAbsent", wall), 60, "InferenceAbsent at AM"
    )
    seconds = {"absent_at_alertmanager": time.monotonic() - stopped}
    down = wait_until(lambda: _active(stack, "InferenceTargetDown", wall), 60, "TargetDown at AM")
    seconds["target_down_at_alertmanager"] = time.monotonic() - stopped
    note = wait_until(
        lambda: stack.hook.first("InferenceAbsent", "firing", stopped), 30, "the page"
    )
    seconds["absent_at_webhook"] = note.received - stopped
    assert note.body["receiver"] == PAGER  # prod, critical: it pages
    assert absent["labels"]["namespace"] == "mlops-prod" and absent["labels"]["job"] == "inference"
    assert absent["labels"]["severity"] == "critical"
    assert down["labels"]["pod"] == "inference-0" and down["labels"]["severity"] == "warning"
    # Every replica down says nothing the absent alert does not: the per-replica one is held back.
    suppressed = wait_until(
        lambda: (_active(stack, "InferenceTargetDown", wall) or {})
        .get("status", {})
        .get("inhibitedBy"),
        30,
        "InferenceTargetDown inhibited",
    )
    assert suppressed
    time.sleep(2)  # a few group intervals: the inhibited alert must not be sent
    assert stack.hook.first("InferenceTargetDown", "firing", stopped) is None
    print("\nservice stopped -> seconds (rules time-compressed 60x):", json.dumps(seconds))


def test_vanished_target_fires_absent_not_target_down(stack: Stack) -> None:
    """The deployment scaled away: its endpoints leave discovery, so `up` has no series."""
    wall = time.time()
    stack.prometheus.set_targets([])
    removed = time.monotonic()
    absent = wait_until(
        lambda: _active(stack, "InferenceAbsent", wall), 60, "InferenceAbsent at AM"
    )
    seconds = {"absent_at_alertmanager": time.monotonic() - removed}
    assert absent["labels"]["namespace"] == "mlops-prod"
    note = wait_until(
        lambda: stack.hook.first("InferenceAbsent", "firing", removed), 30, "the page"
    )
    seconds["absent_at_webhook"] = note.received - removed
    assert note.body["receiver"] == PAGER
    # The service itself never failed a scrape.
    assert _active(stack, "InferenceTargetDown", wall) is None
    assert stack.prometheus.query(f"{UP} == 0") == []
    # And it resolves once the replica is back in discovery.
    stack.prometheus.set_targets([stack.service.port])
    back = time.monotonic()
    wait_until(lambda: stack.hook.first("InferenceAbsent", "resolved", back), 60, "resolved")
    seconds["resolved_at_webhook"] = time.monotonic() - back
    print("\ntarget removed -> seconds (rules time-compressed 60x):", json.dumps(seconds))
