"""The loop issue 21 closes, every part real: ground truth posted to the real service's
``/feedback`` drops a fixture model's live accuracy below its card; a real Prometheus with the
committed rules (durations divided by 120: the 1 h window is 30 s, ``for: 10m`` is 5 s) fires
``LiveAccuracyBelowCard``; the project's Alertmanager route posts to the receiver, which starts
exactly ONE pipeline on the local forge. Before that, a few wrong labels (under the rule's
100-label floor) start nothing. The seconds from the condition to the trigger are printed."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tests.monitoring.stack import Prometheus, send_wrong_feedback, wait_until
from tests.retrain.loop import one_trigger, running_loop, still_one_trigger
from tests.support.forge_server import ForgeServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "admin-" + secrets.token_urlsafe(16)
TAG = "fixture-v1"
ALERT = "LiveAccuracyBelowCard"
COMPRESS = 120
FOR_SECONDS = 10 * 60 / COMPRESS  # the rule's `for: 10m`


def value(prometheus: Prometheus, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_bad_feedback_starts_exactly_one_pipeline_and_few_labels_none(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    with running_loop(
        tmp_path,
        forge_server,
        token=TOKEN,
        tag=TAG,
        kind="tabular",
        accuracy=0.96,
        compress=COMPRESS,
    ) as loop:
        service, receiver, prometheus = loop.service, loop.receiver, loop.prometheus
        # The counter is scraped at 0 before any feedback, so increase() counts every label.
        wait_until(
            lambda: value(prometheus, f'mlops_feedback_total{{tag="{TAG}"}}') == 0,
            30,
            "a zero feedback counter",
        )

        # 1. Twenty labels, all wrong: accuracy 0, but under the 100-label floor: no trigger.
        send_wrong_feedback(service, TOKEN, TAG, 20)
        wait_until(
            lambda: (value(prometheus, f'tag:mlops_feedback:increase1h{{tag="{TAG}"}}') or 0) >= 15,
            30,
            "Prometheus to count the first labels",
        )
        time.sleep(FOR_SECONDS + 4)  # past the hold, a group_wait and a webhook
        assert forge_server.triggers() == []
        assert value(prometheus, f'ALERTS{{alertname="{ALERT}"}}') is None

        # 2. Two hundred more wrong labels: the floor is passed; from now on the condition holds.
        send_wrong_feedback(service, TOKEN, TAG, 200)
        condition = time.monotonic()
        seconds, variables = one_trigger(forge_server, ALERT, condition)
        assert variables["MLOPS_RETRAIN_SERVING_TAG"] == TAG
        print(
            f"\nbad feedback -> pipeline trigger: {seconds:.1f} s = the rule's for: "
            f"({FOR_SECONDS:.0f} s here) + {seconds - FOR_SECONDS:.1f} s (scrape, recording "
            "rules, evaluation, group_wait 1 s, webhook, forge)"
        )
        assert FOR_SECONDS <= seconds < FOR_SECONDS + 40

        still_one_trigger(forge_server, receiver)
