"""The retrain receiver as the Deployment runs it (``python -m machinery.retrain`` under
uvicorn), on a free 127.0.0.1 port, settings from ``MLOPS_RETRAIN_*``, stopped by PID."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from tests.monitoring.stack import Alertmanager
from tests.support.forge_server import (
    FORGEJO_REPO,
    FORGEJO_TOKEN,
    GITLAB_PROJECT_ID,
    GITLAB_TRIGGER_TOKEN,
    TARGET_BRANCH,
    ForgeServer,
)
from tests.support.ports import free_port, wait_for_port
from tests.support.process import stop_process

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_TOKEN = "am-webhook-token-0001"


def alert(
    name: str = "LiveAccuracyBelowCard",
    status: str = "firing",
    namespace: str = "mlops-prod",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "namespace": namespace, "severity": "warning", **labels},
        "annotations": {"summary": f"{name} in {namespace}", "value": "0.71"},
        "startsAt": "2026-12-05T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "c0ffee",
    }


def notification(*alerts: dict[str, Any], group: str = "") -> dict[str, Any]:
    """An Alertmanager v4 webhook body, as Alertmanager 0.25 sends it."""
    first = alerts[0]["labels"]
    group_labels = {"alertname": first["alertname"], "namespace": first["namespace"]}
    # Alertmanager's groupKey: the route's matchers path, then the group_by labels.
    labels = ", ".join(f'{k}="{v}"' for k, v in group_labels.items())
    key = group or '{}/{alertname=~"^(?:LiveAccuracyBelowCard)$"}:{' + labels + "}"
    return {
        "receiver": "mlops-retrain",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": group_labels,
        "commonLabels": first,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
    }


class Receiver:
    def __init__(self, state: Path, forge: ForgeServer, kind: str = "gitlab", **settings: str):
        self.state = state
        self.forge = forge
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        state.mkdir(parents=True, exist_ok=True)
        (state / "webhook-token").write_text(WEBHOOK_TOKEN + "\n")
        (state / "forge-token").write_text(
            (GITLAB_TRIGGER_TOKEN if kind == "gitlab" else FORGEJO_TOKEN) + "\n"
        )
        self.settings = {
            "FORGE": kind,
            "FORGE_URL": forge.url,
            "PROJECT": str(GITLAB_PROJECT_ID) if kind == "gitlab" else FORGEJO_REPO,
            "REF": TARGET_BRANCH,
            "FORGE_TOKEN_FILE": str(state / "forge-token"),
            "WEBHOOK_TOKEN_FILE": str(state / "webhook-token"),
            "PORT": str(self.port),
            "BACKOFF_SECONDS": "0.1",
            **settings,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
        env.update({f"MLOPS_RETRAIN_{k}": v for k, v in self.settings.items()})
        return env

    def start(self) -> Receiver:
        log = (self.state / "receiver.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "machinery.retrain"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        return (self.state / "receiver.log").read_text(errors="replace")

    def post(self, body: Any, auth: str | None = "bearer", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth == "bearer":
            headers["Authorization"] = f"Bearer {WEBHOOK_TOKEN}"
        elif auth == "basic":
            pair = base64.b64encode(f"alertmanager:{WEBHOOK_TOKEN}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        elif auth is not None:
            headers["Authorization"] = auth
        return httpx.post(f"{self.url}/alerts", json=body, headers=headers, timeout=30, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of ``/metrics`` (0 when the series does not exist yet)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = rf"^{re.escape(name)}(?:{{{re.escape(want)}}})? ([0-9.e+]+)$"
        found = re.search(pattern, text, flags=re.M)
        return float(found.group(1)) if found else 0.0

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the receiver's log:\n{self.log()[-2000:]}")
            time.sleep(0.1)


class RetrainAlertmanager(Alertmanager):
    """The project's alertmanager.yml with the retrain receiver's URL and token file pointed
    at this test's, every other receiver at a closed port, and the waits shortened to 1 s."""

    def __init__(self, state: Path, receiver_url: str, token_file: Path) -> None:
        self.token_file = token_file
        super().__init__(state, receiver_url)

    def configure(self, config: dict[str, Any], webhook_url: str) -> None:
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                if receiver["name"] == "mlops-retrain":
                    hook["url"] = webhook_url
                    hook["http_config"]["authorization"]["credentials_file"] = str(self.token_file)
                else:
                    hook["url"] = "http://127.0.0.1:9/unused"
        self.route = next(r for r in config["route"]["routes"] if r["receiver"] == "mlops-retrain")
        self.route.update(group_wait="1s", group_interval="1s")

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
