"""Plain-text tables and times for the CLI's human-readable output."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines
    )


def local_time(when: datetime) -> str:
    """Local wall-clock time with its zone, the way ``served-at`` reads times back."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def short_metrics(metrics: dict[str, Any], limit: int = 3) -> str:
    """The first few scalar metrics as ``name=value``, for one table cell."""
    cells = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        cells.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    more = " …" if len(cells) > limit else ""
    return " ".join(cells[:limit]) + more
