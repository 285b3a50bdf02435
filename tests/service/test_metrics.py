"""Metric names: every family on a live ``/metrics`` is defined in ``service/metrics.py``, and
every name defined there is exposed. Plus the values a dashboard reads after real traffic."""

from __future__ import annotations

import math
import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service import metrics as metrics_module
from service.metrics import METRIC_NAMES
from tests.service.conftest import ADMIN, PREDICT, TAG_A, TAG_B, Trained


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def exercise(client: TestClient, trained: Trained) -> None:
    for index in range(20):
        client.post(
            "/predict",
            files={"file": ("d.png", trained.image(index), "image/png")},
            headers=PREDICT,
        )
    client.post("/predict", json={"instances": trained.rows(10)}, headers=PREDICT)
    client.post("/predict", json={"instances": [[1]]}, headers=PREDICT)  # a 422
    client.post("/replace_ml_model", json={"tag": "missing"}, headers=ADMIN)  # a failed swap
    client.post("/replace_ml_model", json={"tag": TAG_B}, headers=ADMIN)
    client.post("/replace_ml_model", json={"tag": TAG_A}, headers=ADMIN)
    client.post("/predict", json={"instances": trained.rows(10)}, headers=PREDICT)
    client.get("/no/such/path")


def test_live_metric_families_match_the_module(client: TestClient, trained: Trained) -> None:
    exercise(client, trained)
    response = client.get("/metrics")
    live = {family.name for family in text_string_to_metric_families(response.text)}
    assert live == set(METRIC_NAMES)


def test_no_metric_is_named_outside_the_module() -> None:
    """Other service modules use the constants' collectors, never a literal metric name."""
    from pathlib import Path

    service = Path(metrics_module.__file__).parent
    pattern = re.compile(r"""["']mlops_[a-z_]+["']""")
    for path in service.rglob("*.py"):
        if path.name != "metrics.py":
            assert not pattern.search(path.read_text()), path


def test_values_after_traffic(client: TestClient, trained: Trained) -> None:
    exercise(client, trained)
    s = scrape(client)
    requests = s["mlops_http_requests_total"]
    assert requests[(("method", "POST"), ("route", "/predict"), ("status", "200"))] == 22
    assert requests[(("method", "POST"), ("route", "/predict"), ("status", "422"))] == 1
    assert requests[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert s["mlops_inference_duration_seconds_count"][(("input", "image"),)] == 20
    assert s["mlops_inference_duration_seconds_count"][(("input", "json"),)] == 2
    assert s["mlops_model_swaps_total"] == {
        (("trigger", "request"),): 2,
        (("trigger", "startup"),): 1,
    }
    failures = s["mlops_model_swap_failures_total"]
    assert failures == {(("reason", "unknown_tag"), ("trigger", "request")): 1}
    info = s["mlops_model_info"]
    assert [dict(k)["tag"] for k, v in info.items() if v == 1] == [TAG_A]
    assert sum(s["mlops_predictions_total"].values()) == 40
    # Counted since the current model loaded (the last swap): the 10 JSON rows after it.
    assert s["mlops_drift_samples"][()] == 10
    assert not math.isnan(s["mlops_drift_class_psi"][()])
    assert not math.isnan(s["mlops_drift_intensity_psi"][()])


def test_drift_grows_when_traffic_is_unlike_training(client: TestClient, trained: Trained) -> None:
    like = trained.rows(300)
    client.post("/predict", json={"instances": like}, headers=PREDICT)
    calm = scrape(client)["mlops_drift_intensity_psi"][()]
    client.post("/replace_ml_model", json={"tag": TAG_B}, headers=ADMIN)  # fresh counts
    blank = [[1.0] * trained.n_features] * 300  # all ink: nothing like the training pictures
    client.post("/predict", json={"instances": blank}, headers=PREDICT)
    drifted = scrape(client)
    assert drifted["mlops_drift_intensity_psi"][()] > calm + 1.0
    assert drifted["mlops_drift_class_psi"][()] > 1.0
