"""Which way is better for a metric, so a diff is coloured by meaning (or not at all)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Direction = Literal["higher", "lower", "none"]
Judgement = Literal["better", "worse", "same", ""]

# Names whose meaning is clear enough to guess; anything else (counts such as n_test, support)
# is neutral and never coloured. params.yaml's report.directions overrides the guess.
_LOWER = re.compile(
    r"loss|error|(^|_)err|mse|mae|rmse|rmsle|mape|medae|deviance|latency|(^|_)time|_s$|bytes"
    r"|perplexity"
)
_HIGHER = re.compile(
    r"acc|f1|precision|recall|auc|(^|_)r2|explained_variance|score|iou|(^|_)map(_|$)|kappa|mcc"
)


class ReportParams(BaseModel):
    """params.yaml's ``report`` section. No baseline here: a cached report stage must never carry
    a stale one (``mlops report --baseline REV`` and ``mlops comment`` compute the diff live)."""

    model_config = ConfigDict(extra="forbid")

    headline: str = ""
    directions: dict[str, Direction] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_baseline(cls, data: Any) -> Any:
        if isinstance(data, dict) and "baseline" in data:
            raise ValueError(
                "baseline is no longer a param (a cached report would keep a stale diff): delete"
                " it; the PR comment diffs against the target branch, and"
                " `mlops report --baseline REV` diffs locally"
            )
        return data


def direction(key: str, overrides: dict[str, Direction]) -> Direction:
    """``key`` as DVC names it (``accuracy``, ``f1_per_class.3``): the override for the key or its
    top-level name, else a guess from the name."""
    for candidate in (key, key.split(".", 1)[0]):
        if candidate in overrides:
            return overrides[candidate]
    name = key.lower()
    if _LOWER.search(name):
        return "lower"
    if _HIGHER.search(name):
        return "higher"
    return "none"


def judge(change: object, way: Direction) -> Judgement:
    if not isinstance(change, (int, float)) or isinstance(change, bool) or way == "none":
        return ""
    if change == 0:
        return "same"
    return "better" if (change > 0) == (way == "higher") else "worse"
