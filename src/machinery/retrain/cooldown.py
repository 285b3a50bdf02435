"""Dedupe per alert group with a cool-down: a flapping alert starts one pipeline, not fifty.

A group (Alertmanager's ``groupKey``: the route plus the group_by labels) that started a run is
quiet for ``cooldown_seconds`` afterwards; a run that could not be started frees its group
again, so the next notification tries once more. Kept in memory: one replica, and a restart
inside a cool-down may start one more run (docs/retraining.md).
"""

from __future__ import annotations

from collections.abc import Callable


class CoolDown:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self._clock = clock
        self._started: dict[str, float] = {}

    def reserve(self, key: str) -> float | None:
        """Claim ``key`` now; None if claimed, else the seconds its cool-down has left."""
        now = self._clock()
        # Forget groups whose cool-down is over: the map stays as small as the live groups.
        for old in [k for k, at in self._started.items() if now - at >= self.seconds]:
            del self._started[old]
        at = self._started.get(key)
        if at is not None:
            return self.seconds - (now - at)
        self._started[key] = now
        return None

    def release(self, key: str) -> None:
        self._started.pop(key, None)
