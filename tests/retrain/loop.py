"""The whole loop, every part real, for the condition tests: a fixture model published and
served (uvicorn), Prometheus with the committed rules (time-compressed), the project's
Alertmanager route with its token file, and the receiver starting runs on the local forge."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from machinery.registry import Registry
from tests.monitoring.stack import (
    RULES,
    InferenceService,
    Prometheus,
    Server,
    compress_time,
    wait_until,
)
from tests.retrain.receiver import WEBHOOK_TOKEN, Receiver, RetrainAlertmanager
from tests.support.fixture_models import FixtureModel, build_fixture_model
from tests.support.forge_server import ForgeServer


@dataclass
class Loop:
    model: FixtureModel
    receiver: Receiver
    service: InferenceService
    prometheus: Prometheus


@contextmanager
def running_loop(
    root: Path,
    forge_server: ForgeServer,
    *,
    token: str,
    tag: str,
    kind: Literal["image", "tabular"],
    accuracy: float,
    compress: int,
) -> Iterator[Loop]:
    """``tag`` (card accuracy ``accuracy``) served from staging; ``token`` is an admin token."""
    model = build_fixture_model(root / "model", kind=kind)
    registry = root / "registry"
    reg = Registry.from_url(str(registry))
    reg.publish(tag, model.model_dir, metrics={"accuracy": accuracy})
    reg.move_alias("staging", tag, by="test")

    token_file = root / "am-token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    receiver = Receiver(root / "receiver", forge_server)
    am = RetrainAlertmanager(root / "am", f"{receiver.url}/alerts", token_file)
    service = InferenceService(
        root / "service", registry, hashlib.sha256(token.encode()).hexdigest()
    )
    prometheus = Prometheus(root / "prometheus", service.port, am.port)
    (prometheus.state / "rules.yml").write_text(compress_time(RULES.read_text(), compress))
    started: list[Receiver | Server] = []
    try:
        receiver.start()
        started.append(receiver)
        for server, ready in (
            (am, "/-/ready"),
            (prometheus, "/-/ready"),
            (service, "/health/ready"),
        ):
            server.start(ready)
            started.append(server)
        yield Loop(model, receiver, service, prometheus)
    finally:
        for server in reversed(started):
            server.stop()


def one_trigger(
    forge_server: ForgeServer, alert: str, since: float
) -> tuple[float, dict[str, str]]:
    """Wait for the run ``alert`` starts: the seconds from ``since`` (monotonic) and its
    variables, checked to name the alert and its reason in prod."""
    wait_until(forge_server.triggers, 120, "a pipeline trigger", interval=0.1)
    seconds = time.monotonic() - since
    (trigger,) = forge_server.triggers()
    variables: dict[str, str] = trigger["variables"]
    assert variables["MLOPS_RETRAIN_ALERT"] == alert
    assert variables["MLOPS_RETRAIN_REASON"].startswith(f"{alert} firing in mlops-prod")
    return seconds, variables


def still_one_trigger(forge_server: ForgeServer, receiver: Receiver) -> None:
    """The alert keeps firing; Alertmanager has nothing new to send and the receiver nothing
    to start (the group's cool-down): still one run a few evaluations later."""
    time.sleep(3)
    assert len(forge_server.triggers()) == 1
    assert receiver.metric("mlops_retrain_refused_total", reason="auth") == 0
