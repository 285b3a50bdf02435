"""An array sweep's watcher: the whole array followed in one squeue call a round, compact
progress, requeued tasks reported, finished points handed over for import as they end."""

from __future__ import annotations

import time

from machinery.errors import UserError
from machinery.slurm.accounting import JobRecord
from machinery.slurm.polling import poll_interval
from machinery.sweep.arrayout import Collecting
from machinery.sweep.arraystate import ArrayState, all_final, states_from_sacct


class Watching(Collecting):
    def _watch(self) -> tuple[ArrayState, dict[int, JobRecord]]:
        state = ArrayState(len(self.request.points))
        state.states.update(self.earlier)  # the points an earlier array finished
        self.live = state
        last = ""
        t0 = time.monotonic()
        while True:
            known = self._poll(state)
            if not known:
                states_from_sacct(state, self._sacct(), self.job_id or "")
            line = state.progress()
            if line != last:
                self.say(line)
                last = line
            self.fresh_records = None
            self._hand_over_done(state)
            if state.final or (not known and len(state.states) == state.points):
                break
            if not known and not state.states:
                raise UserError(f"array {self.job_id}: neither squeue nor sacct knows it")
            time.sleep(poll_interval(self.settings, time.monotonic() - t0))
        self.timings["watch"] = time.monotonic() - t0
        self.finished = True
        t1 = time.monotonic()
        deadline = t1 + self.settings.accounting_wait
        # The last round's hand-over read sacct after squeue saw the end: final rows need no
        # second sacct call (0.2 s on the clock the user waits on).
        records = self.fresh_records
        if records is None or not all_final(records, state.points):
            records = self._records()
        while not all_final(records, state.points) and time.monotonic() < deadline:
            time.sleep(0.5)
            records = self._records()
        self.timings["accounting"] = time.monotonic() - t1
        return state, records
