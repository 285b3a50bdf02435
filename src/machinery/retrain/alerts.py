"""Alertmanager's webhook payload (version 4) and what a retrain run is told about it.

Payload (prometheus.io/docs/alerting/latest/configuration/#webhook_config)::

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing|resolved",
     "receiver": "...", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
     "externalURL": "...", "alerts": [{"status", "labels", "annotations", "startsAt",
     "endsAt", "generatorURL", "fingerprint"}]}

The run gets the reason as CI variables (GitLab) or workflow inputs (Forgejo) of the same
names, lower-cased without the prefix: ``MLOPS_RETRAIN_REASON`` (one line), ``_ALERT`` (the
alert's name), ``_VALUES`` (compact JSON: labels and annotated values of the firing alerts),
``_SERVING_TAG`` (the model tag the alert names, if any) and ``_GROUP_KEY``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Each variable is capped: a CI variable is no place for a whole alert dump.
MAX_VALUE_CHARS = 1000
# Labels that name the served model, in the order they are looked up.
TAG_LABELS = ("model_tag", "tag")
VARIABLES = ("REASON", "ALERT", "VALUES", "SERVING_TAG", "GROUP_KEY")


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # noqa: N815 - Alertmanager's field names
    fingerprint: str = ""


class Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    groupKey: str  # noqa: N815
    status: str
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    alerts: list[Alert] = Field(max_length=1000)


@dataclass(frozen=True)
class RetrainRequest:
    """One pipeline run to ask for: which alert group, and why."""

    group_key: str
    alertname: str
    reason: str
    values: str
    serving_tag: str

    def variables(self) -> dict[str, str]:
        """``MLOPS_RETRAIN_*`` for GitLab's trigger API."""
        return {f"MLOPS_RETRAIN_{k}": v for k, v in self._fields().items()}

    def inputs(self) -> dict[str, str]:
        """The same values as Forgejo ``workflow_dispatch`` inputs (``reason``, ``alert``, …)."""
        return {k.lower(): v for k, v in self._fields().items()}

    def _fields(self) -> dict[str, str]:
        raw = {
            "REASON": self.reason,
            "ALERT": self.alertname,
            "VALUES": self.values,
            "SERVING_TAG": self.serving_tag,
            "GROUP_KEY": self.group_key,
        }
        return {k: _cap(v) for k, v in raw.items()}


def _cap(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= MAX_VALUE_CHARS else one_line[: MAX_VALUE_CHARS - 1] + "…"


def to_request(note: Notification, wanted: list[str]) -> RetrainRequest | None:
    """The retrain this notification asks for, or None: nothing firing that maps to one."""
    firing = [
        a for a in note.alerts if a.status == "firing" and a.labels.get("alertname") in wanted
    ]
    if not firing:
        return None
    first = firing[0]
    alertname = first.labels["alertname"]
    serving = next((a.labels[k] for a in firing for k in TAG_LABELS if a.labels.get(k)), "")
    summary = first.annotations.get("summary") or first.annotations.get("description") or ""
    where = first.labels.get("namespace", "")
    reason = f"{alertname} firing" + (f" in {where}" if where else "")
    if summary:
        reason += f": {summary}"
    if len(firing) > 1:
        reason += f" (and {len(firing) - 1} more)"
    values = [
        {
            "labels": {k: v for k, v in a.labels.items() if k != "alertname"},
            **({"value": a.annotations["value"]} if "value" in a.annotations else {}),
            "startsAt": a.startsAt,
        }
        for a in firing
    ]
    return RetrainRequest(
        group_key=note.groupKey,
        alertname=alertname,
        reason=reason,
        values=json.dumps(values, separators=(",", ":"), sort_keys=True),
        serving_tag=serving,
    )
