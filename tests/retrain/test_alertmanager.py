"""End to end with the real Alertmanager (Debian) and the project's route: an alert posted to
Alertmanager's API reaches the receiver over its authenticated webhook and starts exactly one
pipeline run on the local forge; more alerts of the same group start none (the cool-down)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.stack import wait_until
from tests.retrain.receiver import WEBHOOK_TOKEN, Receiver, RetrainAlertmanager
from tests.support.forge_server import ForgeServer

pytestmark = pytest.mark.integration


def test_an_alert_at_alertmanager_starts_exactly_one_pipeline(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    receiver = Receiver(tmp_path / "receiver", forge_server).start()
    token_file = tmp_path / "am-token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    am = RetrainAlertmanager(tmp_path / "am", f"{receiver.url}/alerts", token_file)
    try:
        am.start("/-/ready")
        labels: dict[str, Any] = {
            "alertname": "LiveAccuracyBelowCard",
            "namespace": "mlops-prod",
            "severity": "warning",
            "model_tag": "exp-20261201-000000-abcdef0",
        }
        fired = time.monotonic()
        am.fire(**labels, pod="inference-0")
        wait_until(forge_server.triggers, 30, "a pipeline trigger", interval=0.05)
        seconds = time.monotonic() - fired
        (trigger,) = forge_server.triggers()
        assert trigger["variables"]["MLOPS_RETRAIN_ALERT"] == "LiveAccuracyBelowCard"
        assert trigger["variables"]["MLOPS_RETRAIN_SERVING_TAG"] == labels["model_tag"]
        assert "below the card" in trigger["variables"]["MLOPS_RETRAIN_REASON"]
        print(f"\nalert at Alertmanager -> pipeline trigger: {seconds:.2f} s (group_wait 1s)")
        assert seconds < 1 + 10  # group_wait + one round trip, with a loaded machine's margin

        # The group changes (a second replica's alert): Alertmanager notifies again, the
        # receiver answers "deduped" and the forge sees nothing new.
        am.fire(**labels, pod="inference-1")
        wait_until(
            lambda: receiver.metric("mlops_retrain_deduped_total", alertname=labels["alertname"]),
            30,
            "a deduped notification",
        )
        assert len(forge_server.triggers()) == 1
        assert receiver.metric("mlops_retrain_refused_total", reason="auth") == 0
    finally:
        am.stop()
        receiver.stop()
