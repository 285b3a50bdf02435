"""The sweep tests' own stages (stdlib only, so any Python 3 on a cluster node runs them).

``train`` fits a one-feature regressor (``ridge``: closed form with penalty ``alpha``; ``knn``:
the mean of the ``k`` nearest rows) on ``data/points.csv``; ``evaluate`` scores it on the
held-out rows. A negative alpha is refused the way a real model's code refuses a bad value.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def _params() -> dict[str, Any]:
    params: dict[str, Any] = yaml.safe_load(Path("params.yaml").read_text())["train"]
    return params


def _rows(part: str) -> list[tuple[float, float]]:
    with open("data/points.csv") as f:
        rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
    return rows[::2] if part == "train" else rows[1::2]


def train() -> None:
    p = _params()
    time.sleep(float(p.get("sleep", 0)))  # a long point, for the tests that interrupt one
    if p.get("fail_once"):
        # The first task to get here fails, once (the marker is made atomically): a point whose
        # task ended FAILED, for the tests of a rerun.
        try:
            os.close(os.open(os.path.expanduser(p["fail_once"]), os.O_CREAT | os.O_EXCL))
            sys.exit("error: train.fail_once: failing this once")
        except FileExistsError:
            pass
    if p.get("hold_once"):
        # The same, but the first task waits instead, to be cancelled or preempted.
        try:
            os.close(os.open(os.path.expanduser(p["hold_once"]), os.O_CREAT | os.O_EXCL))
            print("waiting to be cancelled", flush=True)
            time.sleep(600)
        except FileExistsError:
            pass
    if p.get("hold") and not os.path.exists(os.path.expanduser(p["hold_until"])):
        # A point that waits to be preempted, until the marker exists (its rerun runs through).
        print("waiting to be preempted", flush=True)
        time.sleep(600)
    rows = _rows("train")
    model: dict[str, object] = {"estimator": p["estimator"]}
    if p["estimator"] == "ridge":
        alpha = float(p["ridge"]["alpha"])
        if alpha < 0:
            sys.exit(f"error: train.ridge.alpha: {alpha} is negative")
        mx = sum(x for x, _ in rows) / len(rows)
        my = sum(y for _, y in rows) / len(rows)
        sxy = sum((x - mx) * (y - my) for x, y in rows)
        sxx = sum((x - mx) ** 2 for x, _ in rows)
        w = sxy / (sxx + alpha)
        model.update(w=round(w, 12), b=round(my - w * mx, 12))
    elif p["estimator"] == "knn":
        model.update(k=int(p["knn"]["k"]), rows=rows)
    else:
        sys.exit(f"error: train.estimator: {p['estimator']!r} is not ridge or knn")
    Path("models").mkdir(exist_ok=True)
    Path("models/model.json").write_text(json.dumps(model, sort_keys=True) + "\n")
    print(f"trained {p['estimator']}")


def _predict(model: dict[str, Any], x: float) -> float:
    if model["estimator"] == "ridge":
        return float(model["w"] * x + model["b"])
    near = sorted(model["rows"], key=lambda r: (abs(r[0] - x), r[0]))[: model["k"]]
    return sum(y for _, y in near) / len(near)


def evaluate() -> None:
    model = json.loads(Path("models/model.json").read_text())
    rows = _rows("test")
    errors = [(_predict(model, x) - y) ** 2 for x, y in rows]
    mse = sum(errors) / len(errors)
    my = sum(y for _, y in rows) / len(rows)
    var = sum((y - my) ** 2 for _, y in rows) / len(rows)
    Path("eval").mkdir(exist_ok=True)
    metrics = {"mse": round(mse, 6), "r2": round(1 - mse / var, 6)}
    Path("eval/metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    {"train": train, "evaluate": evaluate}[sys.argv[1]]()
