"""Every Prometheus metric of the service is defined here, and nowhere else.

Dashboards and alert rules use only these names; ``tests/service/test_metrics.py`` checks the
list below against a live ``/metrics``. Each app gets its own ``CollectorRegistry`` so several
apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from service.fast_metrics import CounterChild, FastCounter, FastHistogram, HistogramChild

# ``*_created`` series double every family's size and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# ONNX Runtime's run() takes ~20–160 µs for the models here: buckets from 10 µs up.
INFERENCE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, *LATENCY_BUCKETS[:-2])
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Metric family names as exposed (counters gain ``_total``, histograms ``_bucket``/``_sum``/...).
HTTP_REQUESTS = "mlops_http_requests"
HTTP_REQUEST_DURATION = "mlops_http_request_duration_seconds"
INFERENCE_DURATION = "mlops_inference_duration_seconds"
MODEL_INFO = "mlops_model_info"
MODEL_LOADED = "mlops_model_loaded"
MODEL_SWAPS = "mlops_model_swaps"
MODEL_SWAP_FAILURES = "mlops_model_swap_failures"
MODEL_SWAP_DURATION = "mlops_model_swap_duration_seconds"
PREDICTIONS = "mlops_predictions"
DRIFT_CLASS_PSI = "mlops_drift_class_psi"
DRIFT_INTENSITY_PSI = "mlops_drift_intensity_psi"
DRIFT_SAMPLES = "mlops_drift_samples"
DRIFT_FEATURE_PSI = "mlops_drift_feature_psi"
DRIFT_FEATURE_PSI_MAX = "mlops_drift_feature_psi_max"
DRIFT_OUTPUT_PSI = "mlops_drift_output_psi"
PREDICTED_VALUE = "mlops_predicted_value"
# Ground truth sent to POST /feedback, per published tag (service/feedback.py).
FEEDBACK = "mlops_feedback"
FEEDBACK_CORRECT = "mlops_feedback_correct"
FEEDBACK_ABSOLUTE_ERROR = "mlops_feedback_absolute_error"
FEEDBACK_SQUARED_ERROR = "mlops_feedback_squared_error"
MODEL_CARD_ACCURACY = "mlops_model_card_accuracy"

METRIC_NAMES: frozenset[str] = frozenset(
    {
        HTTP_REQUESTS,
        HTTP_REQUEST_DURATION,
        INFERENCE_DURATION,
        MODEL_INFO,
        MODEL_LOADED,
        MODEL_SWAPS,
        MODEL_SWAP_FAILURES,
        MODEL_SWAP_DURATION,
        PREDICTIONS,
        DRIFT_CLASS_PSI,
        DRIFT_INTENSITY_PSI,
        DRIFT_SAMPLES,
        DRIFT_FEATURE_PSI,
        DRIFT_FEATURE_PSI_MAX,
        DRIFT_OUTPUT_PSI,
        PREDICTED_VALUE,
        FEEDBACK,
        FEEDBACK_CORRECT,
        FEEDBACK_ABSOLUTE_ERROR,
        FEEDBACK_SQUARED_ERROR,
        MODEL_CARD_ACCURACY,
    }
)


@dataclass(frozen=True)
class FeedbackSeries:
    """One tag's feedback counts as ``/metrics`` shows them; ``correct`` only for a classifier,
    the error sums only for a regressor, ``card_accuracy`` when its card's metrics have one."""

    tag: str
    total: float
    correct: float | None
    absolute_error: float | None
    squared_error: float | None
    card_accuracy: float | None


class Metrics:
    """The service's collectors, registered on one registry that ``/metrics`` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Updated on every request: prometheus_client's look-alikes at a tenth of the cost
        # (service/fast_metrics.py); the same names, labels and exposition.
        self.http_requests = FastCounter(
            HTTP_REQUESTS,
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_request_duration = FastHistogram(
            HTTP_REQUEST_DURATION,
            "Whole-request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = FastHistogram(
            INFERENCE_DURATION,
            "ONNX Runtime run() latency alone, by input kind.",
            ["input"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            MODEL_INFO,
            "1 for the model tag being served (labels say which).",
            ["tag", "alias", "estimator", "pinned"],
            registry=r,
        )
        self.model_loaded = Gauge(MODEL_LOADED, "1 while a model is loaded (ready).", registry=r)
        self.model_swaps = Counter(
            MODEL_SWAPS,
            "Completed model switches by trigger (startup, request, poll).",
            ["trigger"],
            registry=r,
        )
        self.model_swap_failures = Counter(
            MODEL_SWAP_FAILURES,
            "Failed swaps by trigger and reason; the old model kept serving.",
            ["trigger", "reason"],
            registry=r,
        )
        self.model_swap_duration = Histogram(
            MODEL_SWAP_DURATION,
            "Download + verify + load + warm-up + switch.",
            buckets=SWAP_BUCKETS,
            registry=r,
        )
        self.predictions = FastCounter(
            PREDICTIONS, "Predicted classes (one per input row).", ["label"], registry=r
        )
        self.drift_class_psi = Gauge(
            DRIFT_CLASS_PSI,
            "Population stability index of predicted classes vs the card's training frequencies,"
            " since the model was loaded (>0.2: investigate).",
            registry=r,
        )
        self.drift_intensity_psi = Gauge(
            DRIFT_INTENSITY_PSI,
            "Population stability index of mean input intensity vs the card's training histogram,"
            " since the model was loaded.",
            registry=r,
        )
        self.drift_samples = Gauge(
            DRIFT_SAMPLES, "Rows the drift signals are computed from.", registry=r
        )
        self._feature_psi: Callable[[], list[tuple[str, float]]] = list
        self._max_feature_series = 0
        self.drift_feature_psi_max = Gauge(
            DRIFT_FEATURE_PSI_MAX,
            "Largest per-feature PSI of the inputs vs the card's training statistics (cards with"
            " feature_bins, e.g. tabular models), since the model was loaded.",
            registry=r,
        )
        self.drift_feature_psi_max.set_function(self._feature_psi_max)
        r.register(_FeaturePsi(self))
        self.drift_output_psi = Gauge(
            DRIFT_OUTPUT_PSI,
            "PSI of the model's outputs vs the card's training statistics, since the model was"
            " loaded: predicted classes (classification) or binned predicted values"
            " (regression).",
            registry=r,
        )
        self._value_histogram: Callable[[], tuple[list[float], list[float], float] | None] = (
            lambda: None
        )
        r.register(_PredictedValues(self))
        self._feedback: Callable[[], list[FeedbackSeries]] = list
        r.register(_Feedback(self))
        # Resolving a labelled child costs a dict lookup plus a lock; the hot path reuses them.
        self._request_children: dict[tuple[str, str, int], tuple[CounterChild, HistogramChild]]
        self._request_children = {}
        self._label_children: dict[str, CounterChild] = {}
        self._inference_children: dict[str, HistogramChild] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"  # clients choose methods; label values must stay bounded
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.child(route, method, str(status)),
                self.http_request_duration.child(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_unparsed(self, status: int) -> None:
        """A request the HTTP protocol refused before the app saw it (431, or 400 for bad
        framing): no route, no method, no time worth measuring."""
        self.observe_request("unmatched", "OTHER", status, 0.0)

    def observe_inference(self, kind: str, seconds: float) -> None:
        child = self._inference_children.get(kind)
        if child is None:
            child = self._inference_children[kind] = self.inference_duration.child(kind)
        child.observe(seconds)

    def count_label(self, label: str) -> None:
        child = self._label_children.get(label)
        if child is None:
            child = self._label_children[label] = self.predictions.child(label)
        child.inc()

    def watch_drift(
        self,
        class_psi: Callable[[], float],
        intensity_psi: Callable[[], float],
        samples: Callable[[], float],
    ) -> None:
        """Drift is computed when scraped, so a prediction only pays for a few counters."""
        self.drift_class_psi.set_function(class_psi)
        self.drift_intensity_psi.set_function(intensity_psi)
        self.drift_samples.set_function(samples)

    def watch_feature_drift(
        self, feature_psi: Callable[[], list[tuple[str, float]]], max_series: int
    ) -> None:
        """Per-feature PSI, read at scrape time: ``max_series`` labelled series at most (the
        first features of the card), and the maximum over all of them."""
        self._feature_psi = feature_psi
        self._max_feature_series = max_series

    def watch_outputs(
        self,
        output_psi: Callable[[], float],
        value_histogram: Callable[[], tuple[list[float], list[float], float] | None],
    ) -> None:
        """Output drift and a regressor's predicted-value histogram, read at scrape time."""
        self.drift_output_psi.set_function(output_psi)
        self._value_histogram = value_histogram

    def watch_feedback(self, series: Callable[[], list[FeedbackSeries]]) -> None:
        """Feedback counters per tag, read at scrape time: their labels are published tags only
        (``service/feedback.py`` checks every tag against the registry before counting)."""
        self._feedback = series

    def _feature_psi_max(self) -> float:
        values = [v for _, v in self._feature_psi() if not math.isnan(v)]
        return max(values) if values else math.nan

    def show_model(self, tag: str, alias: str, estimator: str, pinned: bool) -> None:
        self.model_info.clear()
        self.model_info.labels(tag, alias, estimator, str(pinned).lower()).set(1)
        self.model_loaded.set(1)


class _FeaturePsi(Collector):
    """``mlops_drift_feature_psi{feature=…}``: label values come from the model card, so the
    series are computed per scrape and bounded in number."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            DRIFT_FEATURE_PSI,
            "PSI of one input feature vs the card's training statistics, since the model was"
            " loaded (the card's first features only; see mlops_drift_feature_psi_max).",
            labels=["feature"],
        )
        metrics = self._metrics
        for name, value in metrics._feature_psi()[: metrics._max_feature_series]:
            family.add_metric([name[:64]], value)
        yield family


class _PredictedValues(Collector):
    """``mlops_predicted_value``: a regressor's predictions as a histogram whose buckets are the
    card's training bin edges (so they change with the model, which a fixed ``Histogram``
    cannot); since the model was loaded. No samples while a classifier is served."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            PREDICTED_VALUE,
            "Predicted values of a regression model, bucketed at its card's training deciles,"
            " since the model was loaded.",
        )
        found = self._metrics._value_histogram()
        if found is not None:
            bounds, cumulative, total = found
            family.add_metric(
                [],
                [(_bound(b), c) for b, c in zip(bounds, cumulative)],
                sum_value=total,
            )
        yield family


class _Feedback(Collector):
    """The ``/feedback`` counters and each tag's card accuracy. Computed per scrape from the
    feedback module's totals, so the served tag shows 0 from the moment it loads: ``increase()``
    then sees the first batch too (a series born at its first value hides that value)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["tag"]
        total = CounterMetricFamily(
            FEEDBACK, "Ground-truth labels received on /feedback, by model tag.", labels=labels
        )
        correct = CounterMetricFamily(
            FEEDBACK_CORRECT,
            "Feedback whose predicted label equals the actual one (classification tags).",
            labels=labels,
        )
        absolute = CounterMetricFamily(
            FEEDBACK_ABSOLUTE_ERROR,
            "Sum of |predicted - actual| over feedback (regression tags; a row's mean over its"
            " outputs).",
            labels=labels,
        )
        squared = CounterMetricFamily(
            FEEDBACK_SQUARED_ERROR,
            "Sum of (predicted - actual)^2 over feedback (regression tags; a row's mean over its"
            " outputs).",
            labels=labels,
        )
        card = GaugeMetricFamily(
            MODEL_CARD_ACCURACY,
            "Test accuracy from the model card's metrics, for tags with feedback or served.",
            labels=labels,
        )
        for series in self._metrics._feedback():
            tag = [series.tag]
            total.add_metric(tag, series.total)
            if series.correct is not None:
                correct.add_metric(tag, series.correct)
            if series.absolute_error is not None:
                absolute.add_metric(tag, series.absolute_error)
            if series.squared_error is not None:
                squared.add_metric(tag, series.squared_error)
            if series.card_accuracy is not None:
                card.add_metric(tag, series.card_accuracy)
        yield from (total, correct, absolute, squared, card)


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))
