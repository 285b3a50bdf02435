"""Read the WHEN of ``mlops registry served-at``: ISO 8601, ``yesterday 14:03``, ``now``.

Times without a zone are the local time of the machine (``TZ``), as a person asking
"which model served at 14:03 yesterday" means them.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from machinery.errors import UserError

_RELATIVE = re.compile(
    r"(?:(?P<day1>today|yesterday)\s+)?(?P<clock>\d{1,2}:\d{2}(?::\d{2})?)"
    r"(?:\s+(?P<day2>today|yesterday))?"
)


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """An aware datetime for ``text``; a ``UserError`` naming the accepted forms otherwise."""
    current = (now or datetime.now()).astimezone()
    spoken = text.strip().lower()
    if spoken == "now":
        return current
    match = _RELATIVE.fullmatch(spoken)
    if match:
        if match["day1"] and match["day2"]:
            raise _unreadable(text)
        day = current.date()
        if "yesterday" in (match["day1"], match["day2"]):
            day -= timedelta(days=1)
        try:
            parts = [int(part) for part in match["clock"].split(":")]
            clock = time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)
        except ValueError:
            raise _unreadable(text) from None
        return datetime.combine(day, clock).astimezone()
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _unreadable(text) from None
    return parsed.astimezone() if parsed.tzinfo is None else parsed


def _unreadable(text: str) -> UserError:
    return UserError(
        f"cannot read the time {text!r}: use ISO 8601 (2026-11-22T14:03, with Z or +01:00 "
        "for a zone; local time otherwise), 'yesterday 14:03', '14:03' (today) or 'now'"
    )
