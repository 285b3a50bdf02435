"""The receiver's own metrics (``GET /metrics``). Labels are bounded: ``alertname`` only ever
holds a name from the configured alert list, ``reason`` one of ``REFUSED_REASONS``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

REFUSED_REASONS = ("auth", "too_large", "invalid")


@dataclass
class ReceiverMetrics:
    registry: CollectorRegistry
    triggers: Counter
    deduped: Counter
    refused: Counter
    failed: Counter
    forge_attempts: Counter
    ignored: Counter

    @classmethod
    def create(cls) -> ReceiverMetrics:
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            triggers=Counter(
                "mlops_retrain_triggers",
                "Pipeline runs started on the forge, by alert.",
                ["alertname"],
                registry=reg,
            ),
            deduped=Counter(
                "mlops_retrain_deduped",
                "Notifications of a group inside its cool-down: no run started.",
                ["alertname"],
                registry=reg,
            ),
            refused=Counter(
                "mlops_retrain_refused",
                "Webhook requests refused: auth (401), too_large (413), invalid (400/422).",
                ["reason"],
                registry=reg,
            ),
            failed=Counter(
                "mlops_retrain_failed",
                "Runs the forge would not start after every retry.",
                ["alertname"],
                registry=reg,
            ),
            forge_attempts=Counter(
                "mlops_retrain_forge_attempts",
                "Calls to the forge's trigger API, by outcome (ok, retryable, error).",
                ["outcome"],
                registry=reg,
            ),
            ignored=Counter(
                "mlops_retrain_ignored",
                "Notifications with nothing to do: resolved, or no alert that maps to a run.",
                registry=reg,
            ),
        )
