"""The per-request metrics' look-alikes (``service/fast_metrics.py``) expose exactly what
prometheus_client's ``Counter`` and ``Histogram`` expose for the same updates, so dashboards and
alert rules cannot tell them apart."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.fast_metrics import FastCounter, FastHistogram
from service.metrics import INFERENCE_BUCKETS, LATENCY_BUCKETS

# On bucket bounds (a bucket counts values <= its bound), between them, 0, past the last.
VALUES = [0.0, 1e-05, 0.0005, 0.0004999, 0.00051, 0.25, 0.3, 5.0, 5.0001, 120.0, 0.001]
LABELS = [("/predict", "POST", "200"), ("/predict", "POST", "422"), ("unmatched", "OTHER", "431")]


def exposition(registry: CollectorRegistry) -> list[str]:
    return generate_latest(registry).decode().splitlines()


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, INFERENCE_BUCKETS])
def test_histogram_matches_prometheus_client(buckets: tuple[float, ...]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastHistogram("x_seconds", "Help text.", ["route"], buckets=buckets, registry=ours)
    reference = Histogram("x_seconds", "Help text.", ["route"], buckets=buckets, registry=theirs)
    assert exposition(ours) == exposition(theirs)  # no series yet: HELP and TYPE alone
    for index, value in enumerate(VALUES):
        route = f"/r{index % 3}"
        fast.child(route).observe(value)
        reference.labels(route).observe(value)
    assert exposition(ours) == exposition(theirs)


def test_counter_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    labels = ["route", "method", "status"]
    fast = FastCounter("x_requests", "Help text.", labels, registry=ours)
    reference = Counter("x_requests", "Help text.", labels, registry=theirs)
    for index in range(10):
        fast.child(*LABELS[index % 3]).inc()
        reference.labels(*LABELS[index % 3]).inc()
    fast.child(*LABELS[0]).inc(2.5)
    reference.labels(*LABELS[0]).inc(2.5)
    assert exposition(ours) == exposition(theirs)


def test_wrong_label_count_is_refused() -> None:
    counter = FastCounter("y_total", "Help.", ["a", "b"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="expected labels"):
        counter.child("only-one")


def test_a_name_registered_twice_is_refused() -> None:
    registry = CollectorRegistry()
    FastCounter("z_requests", "Help.", ["a"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("z_requests", "Help.", ["a"], registry=registry)
