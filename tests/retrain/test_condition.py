"""From the condition to the pipeline, every part real: the service (uvicorn) serving a fixture
model sees traffic unlike its training data, Prometheus scrapes its drift gauges and evaluates
the committed rules (durations compressed), ``InferenceDriftOverThreshold`` fires, the
project's Alertmanager route posts to the receiver with its token file, and the receiver starts
exactly one run on the local forge. The seconds are measured and printed."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path

import pytest


from tests.retrain.loop import one_trigger, running_loop, still_one_trigger
from tests.support.forge_server import ForgeServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "admin-" + secrets.token_urlsafe(16)
# The rule's `for: 30m` becomes 15 s: what the test waits is the rule's hold, scaled.
COMPRESS = 120
FOR_SECONDS = 30 * 60 / COMPRESS


def test_drift_at_the_service_starts_exactly_one_pipeline(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    with running_loop(
        tmp_path,
        forge_server,
        token=TOKEN,
        tag="fixture-v1",
        kind="image",
        accuracy=1.0,
        compress=COMPRESS,
    ) as loop:
        service, receiver, model = loop.service, loop.receiver, loop.model
        blank = [[1.0] * model.n_features] * 300  # all ink: nothing like the training pictures
        request = urllib.request.Request(
            f"{service.base}/predict",
            data=json.dumps({"instances": blank}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        condition = time.monotonic()  # drift over threshold with enough samples, from now on

        seconds, _ = one_trigger(forge_server, "InferenceDriftOverThreshold", condition)
        overhead = seconds - FOR_SECONDS
        print(
            f"\ncondition -> pipeline trigger: {seconds:.1f} s = the rule's for: "
            f"({FOR_SECONDS:.0f} s here) + {overhead:.1f} s (scrape, evaluation, group_wait 1 s, "
            "webhook, forge)"
        )
        assert FOR_SECONDS <= seconds < FOR_SECONDS + 30
        still_one_trigger(forge_server, receiver)
