"""Input drift: live traffic against the training statistics the model card carries.

Two population stability indices (PSI = Σ (live − ref) · ln(live / ref)): one over predicted
classes, one over the mean intensity of each input row. Counting is per prediction (cheap);
the PSI itself is computed only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import math
import threading

import numpy as np
import numpy.typing as npt

from machinery.modelcard import Reference

# Empty bins would make ln() infinite; the usual PSI practice is a small floor.
_FLOOR = 1e-4


def psi(live_counts: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> float:
    total = float(live_counts.sum())
    if total == 0 or live_counts.shape != reference.shape:
        return math.nan
    live = np.maximum(live_counts / total, _FLOOR)
    ref = np.maximum(reference / max(float(reference.sum()), _FLOOR), _FLOOR)
    return float(np.sum((live - ref) * np.log(live / ref)))


class DriftTracker:
    """Counts since the model was loaded; a swap starts a fresh tracker."""

    def __init__(self, n_classes: int, reference: Reference | None) -> None:
        self._lock = threading.Lock()
        self._class_counts = np.zeros(n_classes, dtype=np.float64)
        self._class_ref: npt.NDArray[np.float64] | None = None
        self._edges: npt.NDArray[np.float64] | None = None
        self._intensity_ref: npt.NDArray[np.float64] | None = None
        self._intensity_counts: npt.NDArray[np.float64] | None = None
        self._edge_list: list[float] | None = None
        if reference is None:
            return
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

    def samples(self) -> float:
        with self._lock:
            return float(self._class_counts.sum())
