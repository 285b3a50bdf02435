"""The whole loop, every part real, for the condition tests: a fixture model published and
served (uvicorn), Prometheus with the committed rules (time-compressed), the project's
Alertmanager route with its token file, and the receiver starting runs on the local forge."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from machinery.registry import Registry
from tests.monitoring.stack import RULES, InferenceService, Prometheus, Server, compress_time
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
