"""Small helpers over grafana-foundation-sdk so each dashboard reads as a list of panels."""

from __future__ import annotations

from typing import TypeAlias

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# The dashboard's datasource variable: Grafana fills in whichever Prometheus the user picks.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every query of the inference dashboard is scoped to the chosen namespace (= environment).
NS = 'namespace="$namespace"'

Target: TypeAlias = cogbuilder.Builder[cogvariants.Dataquery]


def query(
    expr: str, legend: str = "", ref_id: str = "A", instant: bool = False
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


def queries(*pairs: tuple[str, str]) -> list[Target]:
    """``(expr, legend)`` pairs with refIds A, B, C… (the SDK leaves refIds to the caller)."""
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def graph(
    title: str, description: str, targets: list[Target], unit: str, width: int = 12
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets)
        .unit(unit)
        .height(8)
        .span(width)
        .line_width(1)
        .fill_opacity(10)
    )


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )
