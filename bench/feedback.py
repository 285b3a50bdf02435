"""``/feedback`` in ``make bench-service``: its throughput with batches of 100 labels, and what
concurrent feedback costs ``/predict``.

One ``python -m service`` (auth on) on the benchmark's model, pinned to core 0; ``wrk`` on core
1. Throughput: c=8 connections posting a batch of 100 ``{model_tag, predicted, actual}`` items
(labels of the card's classes, or values for a regressor) as fast as they are answered.
Cost: rounds alternate ``/predict`` alone (c=8, the benchmark's usual request, for twice the
usual seconds: a p99 needs samples) and the same while a second ``wrk`` sends one batch of 100
every ``PACE_MS`` ms on each of ``FEEDERS`` connections (1,000 labels/s: more ground truth than
a labelling process usually returns), in the order A B B A …; the verdict is /predict p99 with
feedback ÷ alone, median and min–max over rounds (target ≤ 1.1).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    TOKEN,
    TOKEN_SHA256,
    measure,
    parse,
    row,
    spread,
    start,
    stop,
    wrk_command,
    write_script,
)
from machinery.modelcard import ModelCard, ValueOutput

BATCH = 100
FEEDERS = 1
PACE_MS = 100
TARGET = 1.1
TAG = "bench"  # the tag bench.harness.publish serves


def batch(card: ModelCard) -> bytes:
    """100 items for the served tag: a mix of right and wrong, as real feedback is."""
    items: list[dict[str, Any]] = []
    for i in range(BATCH):
        if isinstance(card.output, ValueOutput):
            width = card.output.width
            value: Any = [float(i)] * width if width > 1 else float(i)
            truth: Any = [i + 0.5] * width if width > 1 else i + 0.5
            items.append({"model_tag": TAG, "predicted": value, "actual": truth})
        else:
            labels = card.labels
            predicted = labels[i % len(labels)]
            actual = predicted if i % 5 else labels[(i + 1) % len(labels)]
            items.append({"model_tag": TAG, "predicted": predicted, "actual": actual})
    return json.dumps(items).encode()


def run(
    common: dict[str, str],
    work: Path,
    card: ModelCard,
    body: bytes,
    content_type: str,
    rounds: int,
    seconds: float,
) -> dict[str, Any]:
    env = {**common, "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256}
    predict = write_script(work / "fb-predict.lua", body, content_type, TOKEN)
    feedback = write_script(work / "feedback.lua", batch(card), "application/json", TOKEN)
    paced = work / "feedback-paced.lua"
    paced.write_text(feedback.read_text() + f"delay = function() return {PACE_MS} end\n")
    print(f"\n/feedback: batches of {BATCH} labels; cost on /predict under {_rate()} labels/s")
    server = start("ours-feedback", ["-m", "service"], env, work)
    try:
        _check(server.port, batch(card))
        measure(server, "/predict", predict, 8, 2)  # warm-up
        measure(server, "/feedback", feedback, 8, 2)
        throughput = []
        for _ in range(rounds):
            point = measure(server, "/feedback", feedback, 8, seconds, "feedback x100")
            print(row(point) + f"  = {point.rps * BATCH:,.0f} labels/s", flush=True)
            throughput.append(point)
        alone: list[float] = []
        loaded: list[float] = []
        feeder_rps: list[float] = []
        # A p99 needs samples: twice the usual seconds. Alone and loaded swap places every
        # round (A B B A ...), so a drift of the shared machine's load does not favour either.
        span = seconds * 2
        for number in range(rounds):
            for loaded_now in (False, True) if number % 2 == 0 else (True, False):
                if not loaded_now:
                    quiet = measure(server, "/predict", predict, 8, span, "predict, alone")
                    print(row(quiet), flush=True)
                    alone.append(quiet.p99_ms)
                    continue
                command = wrk_command(server.port, "/feedback", paced, FEEDERS, span + 2)
                feeder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                time.sleep(1.0)  # the feeder is sending
                busy = measure(server, "/predict", predict, 8, span, "predict, with feedback")
                out, _ = feeder.communicate()
                fed = parse("feedback paced", "/feedback", FEEDERS, out)
                print(row(busy) + f"  (feedback {fed.rps * BATCH:,.0f} labels/s)", flush=True)
                loaded.append(busy.p99_ms)
                feeder_rps.append(fed.rps)
                if busy.non_2xx or fed.non_2xx:
                    raise SystemExit("feedback benchmark: non-2xx answers (see the rows above)")
    finally:
        stop([server])
    ratios = [b / a for a, b in zip(alone, loaded)]
    verdict = "met" if statistics.median(ratios) <= TARGET else "NOT MET"
    labels_per_s = [p.rps * BATCH for p in throughput]
    print(f"/feedback throughput: {spread(labels_per_s)} labels/s (median [min–max])")
    print(f"/predict p99 with feedback / alone: {spread(ratios)}  target ≤ {TARGET}: {verdict}")
    return {
        "batch": BATCH,
        "labels_per_second": labels_per_s,
        "feedback_p99_ms": [p.p99_ms for p in throughput],
        "paced_labels_per_second": [r * BATCH for r in feeder_rps],
        "predict_p99_alone_ms": alone,
        "predict_p99_with_feedback_ms": loaded,
        "p99_ratio_median": statistics.median(ratios),
        "target": TARGET,
    }


def _rate() -> int:
    return FEEDERS * BATCH * 1000 // PACE_MS


def _check(port: int, data: bytes) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{port}/feedback",
        content=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=60,
    )
    if response.status_code != 200 or response.json().get("accepted") != BATCH:
        raise SystemExit(f"/feedback: {response.status_code} {response.text}")
