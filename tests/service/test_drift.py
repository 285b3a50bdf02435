"""Population stability index and the tracker the metrics read at scrape time."""

from __future__ import annotations

import math

import numpy as np

from machinery.modelcard import Reference
from service.drift import DriftTracker, psi

REFERENCE = Reference(
    class_frequencies=[0.5, 0.5],
    intensity_bins=[0.0, 8.0, 16.0],
    intensity_frequencies=[0.5, 0.5],
)


def test_psi_is_zero_for_the_same_distribution() -> None:
    assert psi(np.array([50.0, 50.0]), np.array([0.5, 0.5])) == 0.0


def test_psi_grows_with_shift() -> None:
    small = psi(np.array([55.0, 45.0]), np.array([0.5, 0.5]))
    large = psi(np.array([95.0, 5.0]), np.array([0.5, 0.5]))
    assert 0 < small < 0.1 < large


def test_tracker_single_rows_and_batches_agree() -> None:
    one, many = DriftTracker(2, REFERENCE), DriftTracker(2, REFERENCE)
    rows = np.array([[2.0] * 4, [12.0] * 4, [12.0] * 4], dtype=np.float32)
    classes = np.array([0, 1, 1])
    for i in range(3):
        one.observe(classes[i : i + 1], rows[i : i + 1])
    many.observe(classes, rows)
    assert one.class_psi() == many.class_psi()
    assert one.intensity_psi() == many.intensity_psi()
    assert one.samples() == many.samples() == 3


def test_no_reference_means_no_signal() -> None:
    tracker = DriftTracker(2, None)
    tracker.observe(np.array([0]), np.zeros((1, 4), dtype=np.float32))
    assert math.isnan(tracker.class_psi()) and math.isnan(tracker.intensity_psi())
