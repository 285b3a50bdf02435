"""End to end with the real Alertmanager (Debian) and the project's route: an alert posted to
Alertmanager's API reaches the receiver over its authenticated webhook and starts exactly one
pipeline run on the local forge; more alerts of the same group start none (the cool-down)."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.stack import ALERTMANAGER_CONFIG, Server, wait_until
from tests.retrain.receiver import WEBHOOK_TOKEN, Receiver
from tests.support.forge_server import ForgeServer

pytestmark = pytest.mark.integration


class RetrainAlertmanager(Server):
    """The project's alertmanager.yml with the retrain receiver's URL and token file pointed
    at this test's, every other receiver at a closed port, and the waits shortened to 1 s."""

    name = "alertmanager"

    def __init__(self, state: Path, receiver_url: str, token_file: Path) -> None:
        super().__init__(state)
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                if receiver["name"] == "mlops-retrain":
                    hook["url"] = receiver_url
                    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                else:
                    hook["url"] = "http://127.0.0.1:9/unused"
        self.route = next(r for r in config["route"]["routes"] if r["receiver"] == "mlops-retrain")
        self.route.update(group_wait="1s", group_interval="1s")
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        return [
            "prometheus-alertmanager",
            f"--config.file={self.config}",
            f"--storage.path={self.state / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def fire(self, **labels: str) -> None:
        now = datetime.now(timezone.utc)
        body = [
            {
                "labels": labels,
                "annotations": {"summary": "live accuracy 0.71 is below the card's 0.93"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=5)).isoformat(),
            }
        ]
        request = urllib.request.Request(
            f"{self.base}/api/v2/alerts",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200


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
