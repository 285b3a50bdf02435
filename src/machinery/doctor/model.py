"""What a check reports: one row of the checklist (✓ / ✗ / –), with the fix for a ✗."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "fail", "skip"]
Env = Mapping[str, str]


@dataclass(frozen=True)
class Row:
    """One line of the checklist. ``fix`` is set for a failure: one line saying what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    seconds: float = 0.0


class Failed(Exception):
    """A check found something wrong: what (``detail``) and what to do (``fix``)."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class NotConfigured(Exception):
    """The variables of this check are not set: a ``–`` row, never a failure."""


def ok(name: str, detail: str) -> Row:
    return Row(name, "ok", detail)


def skip(name: str, detail: str) -> Row:
    return Row(name, "skip", detail)


def fail(name: str, detail: str, fix: str) -> Row:
    return Row(name, "fail", detail, fix)


@dataclass(frozen=True)
class Check:
    """A named check with its own time budget. ``run`` returns its rows (a family may give
    several, e.g. SSH, then sbatch, then Python on the same connection)."""

    name: str
    timeout: float
    run: Callable[[Env], list[Row]]
