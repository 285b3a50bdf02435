"""Ground truth for live accuracy: ``POST /feedback`` items checked and counted per model tag.

Stateless: nothing is kept per prediction, only four running sums per published tag (the
counters ``/metrics`` shows, ``service/metrics.py``). A client that knows the true answer sends
what the service predicted and what was right, with the tag that answered (``model_tag`` of the
``/predict`` response), one item or a list of them.

Every label value of a metric here is a tag the registry has published: a tag is looked up once
(its ``meta.json``: the card's task, labels and output width, and its test accuracy), then kept;
a tag the registry does not know is refused (404) and remembered as unknown for a while, so a
client repeating it does not cost a registry read each time. Tags are write-once, so a cached
card never goes stale.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import HTTPException

from machinery.modelcard import ModelCard, ValueOutput
from machinery.registry import InvalidMeta, ModelMeta, RegistryError, TagNotFound
from service.metrics import FeedbackSeries, Metrics
from service.model_store import ModelStore
from service.settings import TAG_PATTERN

# The key of the card's test accuracy in a tag's metrics (what the evaluate stage writes).
ACCURACY_METRIC = "accuracy"
# A tag the registry did not know is refused without a new read for this long.
UNKNOWN_TAG_SECONDS = 30.0
UNKNOWN_TAGS_KEPT = 1024
# float32's range: what the model outputs; larger magnitudes are a client's mistake.
FLOAT32_MAX = 3.4e38
_TAG = re.compile(TAG_PATTERN)
_KEYS = frozenset({"model_tag", "predicted", "actual"})
SHAPE = '{"model_tag": "<published tag>", "predicted": …, "actual": …} or a list of them'


@dataclass(frozen=True)
class Target:
    """What feedback for one tag is checked against: its card's classes, or its output width."""

    tag: str
    regression: bool
    labels: frozenset[str]
    width: int
    accuracy: float | None

    @classmethod
    def of(cls, tag: str, card: ModelCard, metrics: dict[str, Any]) -> Target:
        regression = isinstance(card.output, ValueOutput)
        width = card.output.width if isinstance(card.output, ValueOutput) else 1
        raw = metrics.get(ACCURACY_METRIC)
        accuracy = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0.0 <= raw <= 1.0:
            accuracy = float(raw)
        return cls(tag, regression, frozenset(card.labels), width, accuracy)


class _Sums:
    __slots__ = ("total", "correct", "absolute", "squared")

    def __init__(self) -> None:
        self.total = 0.0
        self.correct = 0.0
        self.absolute = 0.0
        self.squared = 0.0


class FeedbackBook:
    """The per-tag sums behind the feedback counters, and the tags they may be kept for."""

    def __init__(self, store: ModelStore, metrics: Metrics) -> None:
        self.store = store
        self._targets: dict[str, Target] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._sums: dict[str, _Sums] = {}
        metrics.watch_feedback(self.series)

    # --- what /metrics shows ---------------------------------------------------------------

    def series(self) -> list[FeedbackSeries]:
        """Every tag with feedback, and the served tag at zero until its first: a counter that
        exists before its first increment lets ``increase()`` count that increment."""
        found = []
        served = self.store.current
        tags = list(self._sums)
        if served is not None and served.tag not in self._sums:
            tags.append(served.tag)
        for tag in tags:
            target = self._targets.get(tag)
            if target is None:
                if served is None or served.tag != tag:
                    continue
                regression = isinstance(served.card.output, ValueOutput)
                accuracy = None
            else:
                regression, accuracy = target.regression, target.accuracy
            sums = self._sums.get(tag) or _Sums()
            found.append(
                FeedbackSeries(
                    tag=tag,
                    total=sums.total,
                    correct=None if regression else sums.correct,
                    absolute_error=sums.absolute if regression else None,
                    squared_error=sums.squared if regression else None,
                    card_accuracy=accuracy,
                )
            )
        return found

    # --- checking ------------------------------------------------------------------------------

    async def target(self, tag: str) -> Target:
        """The tag's card, from the registry once; 404 for a tag it has not published."""
        known = self._targets.get(tag)
        if known is not None:
            return known
        refused_at = self._unknown.get(tag)
        if refused_at is not None and time.monotonic() - refused_at < UNKNOWN_TAG_SECONDS:
            raise _not_published(tag)
        try:
            meta: ModelMeta = await anyio.to_thread.run_sync(self.store.registry.meta, tag)
        except TagNotFound:
            self._unknown[tag] = time.monotonic()
            self._unknown.move_to_end(tag)
            while len(self._unknown) > UNKNOWN_TAGS_KEPT:
                self._unknown.popitem(last=False)
            raise _not_published(tag) from None
        except InvalidMeta:
            raise HTTPException(
                422, detail=f"model_tag {tag!r}: its meta.json in the registry is unreadable"
            ) from None
        except (RegistryError, OSError):
            raise HTTPException(
                503,
                detail="registry unavailable: cannot check model_tag; retry later",
                headers={"Retry-After": "5"},
            ) from None
        target = Target.of(tag, meta.card, meta.metrics)
        self._unknown.pop(tag, None)
        self._targets[tag] = target
        return target

    async def accept(self, document: object, max_items: int) -> dict[str, Any]:
        """Check every item first, then count them all (a refused batch counts nothing)."""
        items = _items(document, max_items)
        targets: dict[str, Target] = {}
        for number, item in enumerate(items):
            tag = item["model_tag"]
            if tag not in targets:
                targets[tag] = await self.target(tag)
            _check(targets[tag], item, number)
        by_tag: dict[str, dict[str, float]] = {}
        for item in items:
            target = targets[item["model_tag"]]
            sums = self._sums.get(target.tag)
            if sums is None:
                sums = self._sums[target.tag] = _Sums()
            sums.total += 1
            summary = by_tag.setdefault(target.tag, {"count": 0})
            summary["count"] += 1
            if target.regression:
                absolute, squared = _errors(item["predicted"], item["actual"])
                sums.absolute += absolute
                sums.squared += squared
                summary["absolute_error"] = summary.get("absolute_error", 0.0) + absolute
            elif item["predicted"] == item["actual"]:
                sums.correct += 1
                summary["correct"] = summary.get("correct", 0) + 1
            else:
                summary.setdefault("correct", 0)
        for summary in by_tag.values():
            if "absolute_error" in summary:  # 51.25835, not 51.25835000000001
                summary["absolute_error"] = round(summary["absolute_error"], 6)
        return {"accepted": len(items), "tags": by_tag}


def _not_published(tag: str) -> HTTPException:
    return HTTPException(404, detail=f"model_tag {tag!r} is not a published model tag")


def _items(document: object, max_items: int) -> list[dict[str, Any]]:
    items: list[Any] = document if isinstance(document, list) else [document]
    if not items:
        raise HTTPException(422, detail=f"no feedback items; expected {SHAPE}")
    if len(items) > max_items:
        raise HTTPException(
            422,
            detail=f"{len(items)} feedback items, over the limit of {max_items}"
            " (MLOPS_MAX_FEEDBACK_ITEMS): send smaller batches",
        )
    good_tags: set[str] = set()  # a batch usually repeats one tag: match its name once
    for number, item in enumerate(items):
        if type(item) is not dict or item.keys() != _KEYS:
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            where = _where(document, number)
            raise HTTPException(422, detail=f"{where} is {got}; expected {SHAPE}")
        tag = item["model_tag"]
        if type(tag) is str and tag in good_tags:  # (a list or dict is unhashable)
            continue
        if not isinstance(tag, str) or not _TAG.match(tag):
            where = _where(document, number)
            raise HTTPException(422, detail=f"{where}: model_tag must be a tag name string")
        good_tags.add(tag)
    return items


def _where(document: object, number: int) -> str:
    return f"item {number}" if isinstance(document, list) else "body"


def _check(target: Target, item: dict[str, Any], number: int) -> None:
    for key in ("predicted", "actual"):
        value = item[key]
        if target.regression:
            _check_value(target, value, f"item {number}: {key}")
        elif not isinstance(value, str) or value not in target.labels:
            shown = sorted(target.labels)
            more = ", …" if len(shown) > 10 else ""
            raise HTTPException(
                422,
                detail=f"item {number}: {key} {_short(value)} is not a class of {target.tag}'s"
                f" card ({', '.join(shown[:10])}{more})",
            )


def _check_value(target: Target, value: object, where: str) -> None:
    values = value if isinstance(value, list) and target.width > 1 else [value]
    expected = "a number" if target.width == 1 else f"a list of {target.width} numbers"
    if len(values) != target.width:
        raise HTTPException(422, detail=f"{where}: {target.tag} outputs {expected}")
    for v in values:
        # bool is an int subclass; a string would be a silent conversion.
        if type(v) is not float and type(v) is not int:
            raise HTTPException(
                422, detail=f"{where}: {_short(v)} is not a number; {target.tag} outputs {expected}"
            )
        # Also false for NaN; an int is compared exactly (a huge one never overflows here).
        if not abs(v) <= FLOAT32_MAX:
            raise HTTPException(
                422, detail=f"{where}: values must be finite numbers within float32's range"
            )


def _errors(predicted: object, actual: object) -> tuple[float, float]:
    """A row's mean absolute and mean squared error over its outputs."""
    p = predicted if isinstance(predicted, list) else [predicted]
    a = actual if isinstance(actual, list) else [actual]
    diffs = [float(x) - float(y) for x, y in zip(p, a)]
    return (
        sum(abs(d) for d in diffs) / len(diffs),
        sum(d * d for d in diffs) / len(diffs),
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"
