"""The real monitoring path on 127.0.0.1: the service (uvicorn), Prometheus scraping it with the
alert rules, Alertmanager with the project's route, and a webhook receiver at the end of it.

Each server runs as a process of its own on a free port, with its state in a temp dir, and is
stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monitoring.environments import environments
from tests.monitoring.webhook import WebhookReceiver
from tests.support.ports import free_port, wait_for_port
from tests.support.process import stop_process

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
# The stack plays prod: prod's committed rules (scoped to its namespace) and the route that pages.
PROD = next(env for env in environments() if env.name == "prod")
RULES = REPO / "monitoring" / "envs" / PROD.name / "inference.rules.yml"
# The scrape target's labels, as the Prometheus operator would set them: the Service's name is
# the job, and the pod's namespace and name come along.
JOB = "inference"
TARGET_LABELS = {"namespace": PROD.namespace, "pod": "inference-0"}


def compress_time(rules_text: str, factor: int = 60) -> str:
    """The rules with every duration divided by ``factor`` (minutes become seconds), so a test
    sees in seconds what production sees in minutes; the expressions are otherwise unchanged."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def scaled(match: re.Match[str]) -> str:
        seconds = int(match.group(1)) * units[match.group(2)] // factor
        return f"{max(seconds, 1)}s"

    text = re.sub(r"(?<=for: )(\d+)([smhd])\b", scaled, rules_text)
    text = re.sub(r"(?<=\[)(\d+)([smhd])(?=\])", scaled, text)
    return re.sub(r"(?<=offset )(\d+)([smhd])\b", scaled, text)


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Server:
    """A process on a free 127.0.0.1 port; its output goes to a log file in its state dir."""

    name = "server"

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def start(self, ready_path: str, timeout: float = 60.0) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        log = (self.state / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.state
        )
        wait_for_port(self.port, timeout=timeout)
        wait_until(lambda: self.answers(ready_path), timeout, f"{self.name} {ready_path}")

    def answers(self, path: str) -> bool:
        """True when ``path`` answers 2xx (an HTTP error or no connection: False)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.base}{path}", timeout=2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return (self.state / f"{self.name}.log").read_text(errors="replace")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class InferenceService(Server):
    """``python -m service`` (the image's command), following alias ``staging`` of a local-dir
    registry and re-reading it every second."""

    name = "service"

    def __init__(self, state: Path, registry: Path, admin_token_sha256: str) -> None:
        super().__init__(state)
        self.registry = registry
        self.admin_token_sha256 = admin_token_sha256

    def command(self) -> list[str]:
        return [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "src")]),
            MLOPS_REGISTRY_URL=str(self.registry),
            MLOPS_MODEL_ALIAS="staging",
            MLOPS_ALIAS_POLL_SECONDS="1",
            MLOPS_MODEL_CACHE_DIR=str(self.state / "cache"),
            MLOPS_ADMIN_TOKEN_SHA256=self.admin_token_sha256,
            MLOPS_PREDICT_TOKEN_SHA256=self.admin_token_sha256,
        )
        return env


def send_wrong_feedback(service: InferenceService, token: str, tag: str, wrong: int) -> None:
    """``wrong`` labels on ``/feedback`` that contradict the prediction (the tabular fixture's
    classes "low" and "high"), in batches of at most 100."""
    while wrong > 0:
        batch = [{"model_tag": tag, "predicted": "low", "actual": "high"}] * min(wrong, 100)
        request = urllib.request.Request(
            f"{service.base}/feedback",
            data=json.dumps(batch).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        wrong -= len(batch)


class Alertmanager(Server):
    """Debian's Alertmanager with the project's config, its oncall receiver pointed at
    ``webhook_url`` and its waits shortened to 1 s."""

    name = "alertmanager"

    def __init__(self, state: Path, webhook_url: str) -> None:
        super().__init__(state)
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        self.configure(config, webhook_url)
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(config))

    def configure(self, config: dict[str, Any], webhook_url: str) -> None:
        """Every webhook to ``webhook_url``, every route's waits 1 s."""
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = webhook_url
        _shorten_waits(config["route"])

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """The alerts named ``alertname`` Alertmanager holds now (active or suppressed)."""
        query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
        return list(get_json(f"{self.base}/api/v2/alerts?{query}"))

    def command(self) -> list[str]:
        return [
            "prometheus-alertmanager",
            f"--config.file={self.config}",
            f"--storage.path={self.state / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port on 0.0.0.0
        ]


def _shorten_waits(route: dict[str, Any]) -> None:
    route.update(group_wait="1s", group_interval="1s")
    for child in route.get("routes", []):
        _shorten_waits(child)


class Prometheus(Server):
    """Debian's Prometheus scraping the service every second, with the alert rules (time
    compressed) loaded, sending to the Alertmanager. Its targets come from a file (file_sd, as
    Kubernetes discovery would hand them over): ``set_targets`` adds or removes a replica."""

    name = "prometheus"

    def __init__(self, state: Path, service_port: int, alertmanager_port: int) -> None:
        super().__init__(state)
        state.mkdir(parents=True, exist_ok=True)
        (state / "rules.yml").write_text(compress_time(RULES.read_text()))
        self.targets = state / "targets.json"
        self.set_targets([service_port])
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}],
                }
            ],
        }
        (state / "prometheus.yml").write_text(yaml.safe_dump(config))

    def set_targets(self, ports: list[int]) -> None:
        """The replicas to scrape (none: the deployment is gone); replaced atomically."""
        groups = [{"targets": [f"127.0.0.1:{port}"], "labels": TARGET_LABELS} for port in ports]
        scratch = self.targets.with_suffix(".tmp")
        scratch.write_text(json.dumps(groups))
        scratch.replace(self.targets)

    def command(self) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self.state / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.state / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = get_json(url)
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@dataclass
class Stack:
    service: InferenceService
    prometheus: Prometheus
    alertmanager: Alertmanager
    hook: WebhookReceiver
    registry: Path
    live_at: float  # when the service answered /health/live


@contextlib.contextmanager
def running_stack(root: Path, admin_token_sha256: str) -> Iterator[Stack]:
    """Alertmanager, Prometheus and the service (following an empty local registry) on free
    ports under ``root``; every process is stopped on the way out."""
    registry = root / "registry"
    registry.mkdir(parents=True)
    hook = WebhookReceiver()
    hook.start()
    alertmanager = Alertmanager(root / "alertmanager", hook.url)
    service = InferenceService(root / "service", registry, admin_token_sha256)
    prometheus = Prometheus(root / "prometheus", service.port, alertmanager.port)
    order: list[tuple[Server, str]] = [
        (alertmanager, "/-/ready"),
        (prometheus, "/-/ready"),
        (service, "/health/live"),
    ]
    started: list[Server] = []
    try:
        for server, ready in order:
            started.append(server)
            server.start(ready)
        yield Stack(service, prometheus, alertmanager, hook, registry, time.monotonic())
    finally:
        for server in reversed(started):
            server.stop()
        hook.stop()
