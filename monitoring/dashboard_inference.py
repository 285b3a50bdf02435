"""The inference service's dashboard: traffic, latency, the model being served, drift, resources.

Every metric name comes from ``service.metrics`` (a test checks them against a live /metrics);
the only other names are the cluster's own container metrics listed in ``CLUSTER_METRICS``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import piechart, stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.piechart import PieChartType
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

from monitoring.dashboard_feedback import feedback_row
from monitoring.environments import Environment
from monitoring.panels import DATASOURCE, NS, graph, queries, query, thresholds

# Grafana's version of the dashboard's JSON: raise it with every change of this module, so a
# Grafana that saw an older copy replaces it (the generated JSON carries it).
VERSION = 3
# cAdvisor metrics the kubelet exports (kube-prometheus-stack scrapes them); not the service's.
CLUSTER_METRICS = frozenset(
    {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
)

API = 'route!~"/health/.*|/metrics"'
RATE = "$__rate_interval"


def _latency(metric: str, selector: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def traffic_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Request rate",
            "Requests per second by route and status (probes and scrapes included).",
            queries(
                (
                    f"sum by (route, status) (rate(mlops_http_requests_total{{{NS}}}[{RATE}]))",
                    "{{route}} {{status}}",
                )
            ),
            "reqps",
        ),
        graph(
            "Error ratio",
            "Share of API requests (probes excluded) answering 5xx and 4xx. "
            "Alert InferenceHigh5xxRatio fires above 5 % of 5xx for 5 minutes.",
            queries(
                (
                    f'sum(rate(mlops_http_requests_total{{{NS}, {API}, status=~"5.."}}[{RATE}]))'
                    f" / sum(rate(mlops_http_requests_total{{{NS}, {API}}}[{RATE}]))",
                    "5xx",
                ),
                (
                    f'sum(rate(mlops_http_requests_total{{{NS}, {API}, status=~"4.."}}[{RATE}]))'
                    f" / sum(rate(mlops_http_requests_total{{{NS}, {API}}}[{RATE}]))",
                    "4xx",
                ),
            ),
            "percentunit",
        ),
        graph(
            "/predict latency",
            "Whole-request latency of /predict (decode + inference + response). "
            "Alert InferenceLatencyP99OverBudget fires when p99 stays above 0.5 s.",
            queries(*_latency("mlops_http_request_duration_seconds", f'{NS}, route="/predict"')),
            "s",
        ),
        graph(
            "Inference latency",
            "ONNX Runtime run() alone, by input kind: the model's own share of the request.",
            queries(*_latency("mlops_inference_duration_seconds", NS, by="input")),
            "s",
        ),
    ]


def model_row() -> list[object]:
    served = (
        table.Panel()
        .title("Model served per pod")
        .description(
            "The tag each replica serves right now, with its alias and estimator. More than one "
            "tag for longer than the alias poll is InferenceModelTagsDiverged."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (pod, tag, alias, estimator, pinned) (mlops_model_info{{{NS}}} == 1)",
                instant=True,
            ).format(PromQueryFormat.TABLE)
        )
        .height(8)
        .span(12)
    )
    ready = (
        stat.Panel()
        .title("Replicas with a model")
        .description("Replicas that have a model loaded (ready) out of those scraped.")
        .datasource(DATASOURCE)
        .targets(
            queries(
                (f"sum(mlops_model_loaded{{{NS}}})", "ready"),
                (f"count(mlops_model_loaded{{{NS}}})", "scraped"),
            )
        )
        .height(8)
        .span(4)
    )
    failures = (
        graph(
            "Swap failures by reason",
            "Failed hot swaps (request or alias poll); the old model kept serving. "
            "unknown_tag, checksum, invalid_model, registry_unavailable: see docs/monitoring.md.",
            queries(
                (
                    f"sum by (reason, trigger) "
                    f"(increase(mlops_model_swap_failures_total{{{NS}}}[{RATE}]))",
                    "{{reason}} ({{trigger}})",
                )
            ),
            "short",
            width=8,
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
    )
    swap_time = graph(
        "Swap duration",
        "Download + verify + load + warm-up + switch: also what a new pod spends before ready.",
        queries(*_latency("mlops_model_swap_duration_seconds", NS)[1:]),
        "s",
        width=12,
    )
    swaps = graph(
        "Swaps",
        "Completed model switches by trigger (startup, request, poll).",
        queries(
            (
                f"sum by (trigger) (increase(mlops_model_swaps_total{{{NS}}}[{RATE}]))",
                "{{trigger}}",
            )
        ),
        "short",
        width=12,
    ).draw_style(common.GraphDrawStyle.BARS)
    return [served, ready, failures, swap_time, swaps]


def drift_row() -> list[object]:
    classes = (
        piechart.Panel()
        .title("Predicted classes")
        .description(
            "Predicted-class mix over the dashboard's time range; compare with the class "
            "frequencies on the model card."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"sum by (label) (increase(mlops_predictions_total{{{NS}}}[$__range]))",
                "{{label}}",
                instant=True,
            )
        )
        .pie_type(PieChartType.DONUT)
        .height(8)
        .span(8)
    )
    psi = (
        graph(
            "Drift (PSI)",
            "Population stability index per pod, of predicted classes and of input intensity, "
            "against the model card. Above 0.2 over 200+ rows for 30 minutes: "
            "InferenceDriftOverThreshold.",
            queries(
                (f"max by (pod) (mlops_drift_class_psi{{{NS}}})", "classes {{pod}}"),
                (f"max by (pod) (mlops_drift_intensity_psi{{{NS}}})", "intensity {{pod}}"),
            ),
            "short",
            width=10,
        )
        .thresholds(thresholds((None, "green"), (0.1, "yellow"), (0.2, "red")))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    )
    samples = graph(
        "Drift sample size",
        "Rows the drift figures are computed from (since each pod loaded its model).",
        queries((f"max by (pod) (mlops_drift_samples{{{NS}}})", "{{pod}}")),
        "short",
        width=6,
    )
    return [classes, psi, samples]


def resources_row() -> list[timeseries.Panel]:
    container = f'{NS}, container="inference"'
    return [
        graph(
            "Pod CPU",
            "CPU cores used per pod (cAdvisor); compare with the overlay's requests and limits.",
            queries(
                (
                    f"sum by (pod) "
                    f"(rate(container_cpu_usage_seconds_total{{{container}}}[{RATE}]))",
                    "{{pod}}",
                )
            ),
            "short",
        ),
        graph(
            "Pod memory",
            "Working-set memory per pod (cAdvisor): what the OOM killer compares with the limit.",
            queries(
                (f"sum by (pod) (container_memory_working_set_bytes{{{container}}})", "{{pod}}")
            ),
            "bytes",
        ),
    ]


def uid(env: Environment) -> str:
    """Unique per environment: Grafana keys dashboards by uid, across every namespace's
    ConfigMaps (uids are at most 40 characters)."""
    return f"mlops-inference-{env.name}"[:40]


def file_name(env: Environment) -> str:
    """The ConfigMap key, which the Grafana sidecar writes as a file into one shared folder."""
    return f"mlops-inference-{env.name}.json"


def build(env: Environment) -> dash.Dashboard:
    board = (
        dash.Dashboard(f"MLOps inference ({env.name})")
        .uid(uid(env))
        .version(VERSION)
        .description(
            "The inference service: traffic, latency, the model served, drift, live accuracy,"
            " resources."
        )
        .tags(["mlops", "inference"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        # The environment's own namespace, fixed: one dashboard per environment.
        .with_variable(dash.ConstantVariable("namespace").label("Namespace").value(env.namespace))
        .annotation(
            dash.AnnotationQuery()
            .name("Model swaps")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("purple")
            .expr(f"sum by (pod, trigger) (increase(mlops_model_swaps_total{{{NS}}}[1m])) > 0")
        )
    )
    rows: list[tuple[str, list[object]]] = [
        ("Traffic and latency", list(traffic_row())),
        ("Model", model_row()),
        ("Predictions and drift", drift_row()),
        ("Live accuracy (feedback)", list(feedback_row())),
        ("Resources", list(resources_row())),
    ]
    for title, panels in rows:
        board = board.with_row(dash.Row(title))
        for panel in panels:
            board = board.with_panel(panel)  # type: ignore[arg-type]
    return board


# Fields the SDK's AnnotationQuery has no setter for; Grafana's Prometheus annotations read them.
ANNOTATION_EXTRAS = {
    "Model swaps": {
        "titleFormat": "model swap ({{trigger}})",
        "textFormat": "{{pod}}",
        "tagKeys": "pod,trigger",
        "step": "60s",
    }
}
