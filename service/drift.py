"""Input drift: live traffic against the training statistics the model card carries.

Population stability indices (PSI = Σ (live − ref) · ln(live / ref)): over the model's outputs
(predicted classes of a classifier; a regressor's predicted values, binned by the card's
``output_bins``, which also give the buckets of the predicted-value histogram), over the mean
intensity of each input row (image cards), and per input feature (cards with
``feature_bins``: the input-drift signal of tabular models). Counting is per prediction
(cheap); the PSI itself is computed only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import math
import threading

import numpy as np
import numpy.typing as npt

from machinery.modelcard import Reference, Task

# Empty bins would make ln() infinite; the usual PSI practice is a small floor.
_FLOOR = 1e-4
# Per-feature PSI is exported for at most this many features (one series each); the maximum
# over all features is exported too, so a wide model still has one signal to alert on.
MAX_FEATURE_SERIES = 16


def psi(live_counts: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> float:
    total = float(live_counts.sum())
    if total == 0 or live_counts.shape != reference.shape:
        return math.nan
    live = np.maximum(live_counts / total, _FLOOR)
    ref = np.maximum(reference / max(float(reference.sum()), _FLOOR), _FLOOR)
    return float(np.sum((live - ref) * np.log(live / ref)))


class DriftTracker:
    """Counts since the model was loaded; a swap starts a fresh tracker."""

    def __init__(
        self, n_classes: int, reference: Reference | None, task: Task = "classification"
    ) -> None:
        self._lock = threading.Lock()
        self.task = task
        self._values: _ValueCounts | None = None
        self._class_counts = np.zeros(n_classes, dtype=np.float64)
        self._class_ref: npt.NDArray[np.float64] | None = None
        self._edges: npt.NDArray[np.float64] | None = None
        self._intensity_ref: npt.NDArray[np.float64] | None = None
        self._intensity_counts: npt.NDArray[np.float64] | None = None
        self._edge_list: list[float] | None = None
        self._features: _FeatureCounts | None = None
        self._value_rows = 0
        if reference is None:
            return
        self._features = _FeatureCounts.from_reference(reference)
        self._values = _ValueCounts.from_reference(reference)
        if len(reference.class_frequencies) == n_classes:
            self._class_ref = np.asarray(reference.class_frequencies, dtype=np.float64)
        freqs = np.asarray(reference.intensity_frequencies, dtype=np.float64)
        edges = np.asarray(reference.intensity_bins, dtype=np.float64)
        # The card gives bin edges (one more than frequencies); anything else is not comparable.
        if len(edges) == len(freqs) + 1 and len(freqs) > 0:
            self._edges = edges
            self._edge_list = edges.tolist()
            self._intensity_ref = freqs
            self._intensity_counts = np.zeros(len(freqs), dtype=np.float64)

    def observe(self, class_indices: npt.NDArray[np.int64], rows: npt.NDArray[np.float32]) -> None:
        if self._features is not None:
            self._features.observe(rows)
        if len(class_indices) == 1:
            self._observe_one(int(class_indices[0]), float(rows.sum()) / rows.size)
            return
        n_classes = len(self._class_counts)
        valid = class_indices[(class_indices >= 0) & (class_indices < n_classes)]
        with self._lock:
            self._class_counts += np.bincount(valid, minlength=n_classes)
            if self._edges is not None and self._intensity_counts is not None:
                means = rows.mean(axis=1)
                bins = np.searchsorted(self._edges, means, side="right") - 1
                bins = np.clip(bins, 0, len(self._intensity_counts) - 1)
                self._intensity_counts += np.bincount(bins, minlength=len(self._intensity_counts))

    def observe_values(
        self, values: npt.NDArray[np.float32], rows: npt.NDArray[np.float32]
    ) -> None:
        """A regressor's predictions: its values, and the rows for the input signals."""
        if self._features is not None:
            self._features.observe(rows)
        if self._values is not None:
            self._values.observe(values)
        if self._edges is not None and self._intensity_counts is not None:
            bins = np.searchsorted(self._edges, rows.mean(axis=1), side="right") - 1
            bins = np.clip(bins, 0, len(self._intensity_counts) - 1)
            with self._lock:
                self._intensity_counts += np.bincount(bins, minlength=len(self._intensity_counts))
        with self._lock:
            self._value_rows += len(values)

    def _observe_one(self, index: int, mean: float) -> None:
        # The common case (one upload): plain Python beats several tiny numpy calls.
        with self._lock:
            if 0 <= index < len(self._class_counts):
                self._class_counts[index] += 1
            if self._edge_list is not None and self._intensity_counts is not None:
                last = len(self._intensity_counts) - 1
                b = min(max(bisect.bisect_right(self._edge_list, mean) - 1, 0), last)
                self._intensity_counts[b] += 1

    def class_psi(self) -> float:
        if self._class_ref is None:
            return math.nan
        with self._lock:
            return psi(self._class_counts.copy(), self._class_ref)

    def intensity_psi(self) -> float:
        if self._intensity_ref is None or self._intensity_counts is None:
            return math.nan
        with self._lock:
            return psi(self._intensity_counts.copy(), self._intensity_ref)

    def output_psi(self) -> float:
        """PSI of the outputs: predicted classes, or a regressor's binned values."""
        if self.task == "classification":
            return self.class_psi()
        return self._values.psi() if self._values is not None else math.nan

    def value_histogram(self) -> tuple[list[float], list[float], float] | None:
        """A regressor's predicted values as a Prometheus histogram: the card's bin edges as
        upper bounds (then +Inf), cumulative counts, and the sum; ``None`` without statistics."""
        return self._values.histogram() if self._values is not None else None

    def samples(self) -> float:
        with self._lock:
            return float(self._class_counts.sum()) + self._value_rows

    def feature_psi(self) -> list[tuple[str, float]]:
        """(feature name, PSI) for every feature the card has statistics for."""
        return self._features.psi() if self._features is not None else []


class _FeatureCounts:
    """Live counts per feature and bin, against the card's per-feature frequencies.

    Edges are padded with +inf to one matrix, so a batch is binned with one comparison
    (rows × features × edges) instead of a search per feature. Rows wait in a short list and
    are binned ``BATCH_ROWS`` at a time (or when ``/metrics`` asks): binning one 64-pixel row
    costs ~20 µs of numpy call overhead, 4 % of an image prediction, and 256 rows at once cost
    about as much as three single rows (``bench/service.py``; ``tests/service/test_drift.py``
    checks the counts are the same).
    """

    BATCH_ROWS = 256

    def __init__(
        self, names: list[str], edges: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]
    ) -> None:
        self.names = names
        self._inner = edges[:, 1:-1]  # a value's bin = how many inner edges it is ≥
        self._ref = ref
        self._n_bins = np.isfinite(edges).sum(axis=1) - 1
        self._counts = np.zeros_like(ref)
        self._index = np.arange(len(names))
        self._lock = threading.Lock()
        self._pending: list[npt.NDArray[np.float32]] = []
        self._pending_rows = 0

    @classmethod
    def from_reference(cls, reference: Reference) -> _FeatureCounts | None:
        bins, freqs = reference.feature_bins, reference.feature_frequencies
        if not bins or not freqs or len(bins) != len(freqs):
            return None
        names = reference.feature_names
        if names is None or len(names) != len(bins):
            names = [str(i) for i in range(len(bins))]
        width = max(len(b) for b in bins)
        if width < 2:
            return None
        edges = np.full((len(bins), width), np.inf)
        ref = np.zeros((len(bins), width - 1))
        for i, (b, f) in enumerate(zip(bins, freqs)):
            # Not comparable (no bins, or edges and frequencies that do not fit): skipped.
            if len(b) >= 2 and len(f) == len(b) - 1 and all(x <= y for x, y in zip(b, b[1:])):
                edges[i, : len(b)] = b
                ref[i, : len(f)] = f
        return cls(names, edges, ref)

    def observe(self, rows: npt.NDArray[np.float32]) -> None:
        data = rows.reshape(len(rows), -1)
        if data.shape[1] != len(self.names):
            return  # a card whose statistics do not match its input: no signal, no error
        with self._lock:
            # The caller never reuses ``rows`` (a fresh array per request): no copy needed.
            self._pending.append(data)
            self._pending_rows += len(data)
            if self._pending_rows >= self.BATCH_ROWS:
                self._flush()

    def _flush(self) -> None:
        """Bin the pending rows into the counts (the lock is held)."""
        if not self._pending:
            return
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        bins = (data[:, :, None] >= self._inner[None, :, :]).sum(axis=2)
        bins = np.minimum(bins, np.maximum(self._n_bins - 1, 0))
        # One bincount over (feature, bin) cells: np.add.at is ~100× slower per element.
        width = self._counts.shape[1]
        cells = (self._index * width + bins).ravel()
        self._counts += np.bincount(cells, minlength=self._counts.size).reshape(self._counts.shape)

    def psi(self) -> list[tuple[str, float]]:
        with self._lock:
            self._flush()
            counts = self._counts.copy()
        result = []
        for i, name in enumerate(self.names):
            k = int(self._n_bins[i])
            if k >= 1:
                result.append((name, psi(counts[i, :k], self._ref[i, :k])))
        return result


class _ValueCounts:
    """A regressor's predicted values, counted in the card's output bins.

    Slot ``j`` counts values in (e_{j-1}, e_j] for the edges e_0..e_k, slot 0 everything up to
    e_0 and slot k + 1 everything above e_k: the buckets of a Prometheus histogram with the
    edges as upper bounds. The PSI folds the two outer slots into the first and last bin.
    """

    def __init__(self, edges: list[float], ref: npt.NDArray[np.float64]) -> None:
        self.edges = edges
        self._edges = np.asarray(edges, dtype=np.float64)
        self._ref = ref
        self._slots = np.zeros(len(edges) + 1, dtype=np.float64)
        self._sum = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_reference(cls, reference: Reference) -> _ValueCounts | None:
        edges, freqs = reference.output_bins, reference.output_frequencies
        increasing = all(a < b for a, b in zip(edges, edges[1:]))
        if len(edges) < 2 or len(freqs) != len(edges) - 1 or not increasing:
            return None  # no statistics (or not comparable ones): no signal, no error
        return cls(list(edges), np.asarray(freqs, dtype=np.float64))

    def observe(self, values: npt.NDArray[np.float32]) -> None:
        flat = values.reshape(-1).astype(np.float64)
        finite = flat[np.isfinite(flat)]
        slots = np.bincount(
            np.searchsorted(self._edges, finite, side="left"), minlength=len(self._slots)
        )
        with self._lock:
            self._slots += slots
            self._sum += float(finite.sum())

    def psi(self) -> float:
        with self._lock:
            slots = self._slots.copy()
        bins = slots[1:-1].copy()
        bins[0] += slots[0]
        bins[-1] += slots[-1]
        return psi(bins, self._ref)

    def histogram(self) -> tuple[list[float], list[float], float]:
        with self._lock:
            cumulative = np.cumsum(self._slots).tolist()
            total = self._sum
        return [*self.edges, math.inf], cumulative, total
