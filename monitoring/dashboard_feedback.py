"""The dashboard's feedback row: live accuracy per tag against its card's, and feedback volume.

Live accuracy and its Wilson bounds are the series the rules record (monitoring/rules/
inference.rules.yml, group mlops-feedback: one hour of /feedback labels per tag); the card's
accuracy and the volumes are the service's own metrics.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from monitoring.panels import NS, graph, queries

RATE = "$__rate_interval"


def feedback_row() -> list[timeseries.Panel]:
    accuracy = graph(
        "Live accuracy vs card",
        "Per tag, over the last hour of /feedback: the share of labels predicted right, the 95% "
        "Wilson interval around it, and the test accuracy on the tag's model card. "
        "LiveAccuracyBelowCard fires when the interval's top stays below the card minus 0.05 "
        "with 100+ labels in the hour.",
        queries(
            (f"tag:mlops_live_accuracy:ratio1h{{{NS}}}", "live {{tag}}"),
            (f"tag:mlops_live_accuracy_wilson_lower:1h{{{NS}}}", "lower bound {{tag}}"),
            (f"tag:mlops_live_accuracy_wilson_upper:1h{{{NS}}}", "upper bound {{tag}}"),
            (f"max by (tag) (mlops_model_card_accuracy{{{NS}}})", "card {{tag}}"),
        ),
        "percentunit",
    )
    volume = graph(
        "Feedback volume",
        "Ground-truth labels counted per second by tag, and /feedback requests by status "
        "(4xx: unknown tag or class, bad values, too many items; nothing of those is counted).",
        queries(
            (f"sum by (tag) (rate(mlops_feedback_total{{{NS}}}[{RATE}]))", "labels {{tag}}"),
            (
                f'sum by (status) (rate(mlops_http_requests_total{{{NS}, route="/feedback"}}'
                f"[{RATE}]))",
                "requests {{status}}",
            ),
        ),
        "short",
    )
    errors = graph(
        "Live error (regression)",
        "Regression tags, over the last hour of /feedback: mean absolute error and root mean "
        "squared error (compare with the card's metrics in /get_experiment_metas).",
        queries(
            (f"tag:mlops_live_mae:1h{{{NS}}}", "MAE {{tag}}"),
            (f"tag:mlops_live_rmse:1h{{{NS}}}", "RMSE {{tag}}"),
        ),
        "short",
        width=24,
    )
    return [accuracy, volume, errors]
