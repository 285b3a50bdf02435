"""The checklist as a table (✓ / ✗ / –, a fix under each ✗) or as JSON for machines."""

from __future__ import annotations

import json
from dataclasses import asdict

from machinery.doctor.model import Row

MARK = {"ok": "✓", "fail": "✗", "skip": "–"}


def table(rows: list[Row], seconds: float) -> str:
    width = max((len(r.name) for r in rows), default=0)
    counts = {s: sum(r.status == s for r in rows) for s in MARK}
    lines = [
        f"mlops doctor: {counts['ok']} ✓, {counts['fail']} ✗, {counts['skip']} – not configured"
        f" ({seconds:.1f} s)",
        "",
    ]
    for row in rows:
        lines.append(f"{MARK[row.status]} {row.name:<{width}}  {row.detail}  [{row.seconds:.2f} s]")
        if row.status == "fail":
            lines.append(f"  {'':<{width}}  fix: {row.fix}")
    return "\n".join(lines)


def as_json(rows: list[Row], seconds: float) -> str:
    return json.dumps(
        {
            "ok": not any(r.status == "fail" for r in rows),
            "seconds": round(seconds, 3),
            "checks": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in rows],
        },
        indent=2,
        ensure_ascii=False,
    )
