"""Population stability index and the tracker the metrics read at scrape time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from machinery.modelcard import Reference
from machinery.registry import Registry
from service.drift import DriftTracker, _FeatureCounts, psi
from service.main import create_app
from tests.service.conftest import ADMIN, ALIAS, PREDICT, Trained, settings_for
from tests.support.fixture_models import FixtureModel

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


def test_cards_without_feature_statistics_still_read() -> None:
    old = {"class_frequencies": [1.0], "intensity_bins": [0.0, 1.0], "intensity_frequencies": [1]}
    assert Reference.model_validate(old).feature_bins is None
    assert Reference.model_validate({"class_frequencies": [1.0]}).intensity_bins == []


def test_feature_psi_single_rows_and_batches_agree(tabular: FixtureModel) -> None:
    reference = tabular.card.reference
    assert reference is not None and reference.feature_bins is not None
    rows = tabular.test_x.astype(np.float32)
    classes = np.zeros(len(rows), dtype=np.int64)
    one, many = DriftTracker(3, reference), DriftTracker(3, reference)
    for i in range(len(rows)):
        one.observe(classes[i : i + 1], rows[i : i + 1])
    many.observe(classes, rows)
    assert one.feature_psi() == many.feature_psi()
    names = [name for name, _ in many.feature_psi()]
    assert names == reference.feature_names
    shifted = DriftTracker(3, reference)
    moved = rows.copy()
    moved[:, 1] += 5.0
    shifted.observe(classes, moved)
    # 30 held-out rows in 10 bins are noisy (PSI ~1-2); a moved feature stands far above it.
    calm = max(v for _, v in many.feature_psi())
    psis = dict(shifted.feature_psi())
    assert psis[names[1]] > 5.0 and psis[names[1]] > 2 * calm, (psis, calm)


def test_tabular_input_drift_is_a_metric(
    tabular: FixtureModel, tmp_path: Path, trained: Trained
) -> None:
    """A tabular card (no preprocessing, no intensity histogram) gets its input-drift signal
    from per-feature PSI; one shifted feature shows up under its own name and in the max."""
    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish("tab-1", tabular.model_dir, metrics={})
    registry.publish("tab-2", tabular.model_dir, metrics={})
    registry.move_alias(ALIAS, "tab-1", by="test")
    with TestClient(create_app(settings_for(str(tmp_path / "registry"), tmp_path))) as client:
        like = np.tile(tabular.test_x, (10, 1))
        assert (
            client.post("/predict", json={"instances": like.tolist()}, headers=PREDICT).status_code
            == 200
        )
        calm = _feature_series(client.get("/metrics").text)
        assert set(calm) == {*(f"x{i}" for i in range(tabular.n_features)), "max"}
        assert calm["max"] == max(v for k, v in calm.items() if k != "max")

        assert (
            client.post("/replace_ml_model", json={"tag": "tab-2"}, headers=ADMIN).status_code
            == 200
        )
        shifted = like.copy()
        shifted[:, 2] += 5.0  # one feature moves far outside its training range
        assert (
            client.post(
                "/predict", json={"instances": shifted.tolist()}, headers=PREDICT
            ).status_code
            == 200
        )
        drifted = _feature_series(client.get("/metrics").text)
        # Held-out rows are few (PSI ~1-2 from noise alone); the moved feature stands out.
        assert drifted["x2"] > 5.0 and drifted["max"] == drifted["x2"], drifted
        assert drifted["x2"] > 2 * calm["max"] and drifted["x0"] == calm["x0"], (calm, drifted)
        text = client.get("/metrics").text
        assert "mlops_drift_intensity_psi NaN" in text  # the image signal stays off


def _feature_series(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('mlops_drift_feature_psi{feature="'):
            name = line.split('"')[1]
            found[name] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("mlops_drift_feature_psi_max "):
            found["max"] = float(line.rsplit(" ", 1)[1])
    return found


def test_rows_wait_in_a_bounded_batch_and_every_row_is_counted(tabular: FixtureModel) -> None:
    """Single rows are binned in batches (BATCH_ROWS at a time, and whatever waits when the PSI
    is asked for): across batch edges the counts equal a per-feature ``searchsorted``."""
    reference = tabular.card.reference
    assert reference is not None and reference.feature_bins is not None
    rng = np.random.default_rng(7)
    base = tabular.test_x.astype(np.float32)
    rows = base[rng.integers(0, len(base), 2 * _FeatureCounts.BATCH_ROWS + 37)]
    rows += rng.normal(0, 0.5, rows.shape).astype(np.float32)
    tracker = DriftTracker(3, reference)
    features = tracker._features
    assert features is not None
    for row in rows:
        tracker.observe(np.zeros(1, dtype=np.int64), row[None, :].copy())
        assert features._pending_rows < _FeatureCounts.BATCH_ROWS
    got = dict(tracker.feature_psi())
    for i, (edges, freqs) in enumerate(zip(reference.feature_bins, reference.feature_frequencies)):
        inner = np.asarray(edges[1:-1])
        counts = np.bincount(
            np.searchsorted(inner, rows[:, i], side="right"), minlength=len(freqs)
        ).astype(np.float64)
        expected = psi(counts, np.asarray(freqs, dtype=np.float64))
        assert got[features.names[i]] == pytest.approx(expected), i
