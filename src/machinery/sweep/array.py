"""Transport ``local``/``ssh``: the whole grid as ONE Slurm job array.

Stage-in once (the code snapshot and the shared deps, read-only for every task, plus one
``points/i/params.yaml`` per point), one ``sbatch --array=0-(N-1)%K``, one watcher over the
whole array, one stage-out of every finished point's outs; then each point becomes a DVC
experiment in its own copy of the workspace. The array's identity is the grid plus the code,
deps and params outside the grid: a rerun finds the same array and reattaches (a finished one
is staged out again, nothing is submitted); if some of its tasks ended FAILED, PREEMPTED,
CANCELLED, ... a rerun submits one new array over just those points (machinery.sweep.resubmit).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from machinery.errors import UserError
from machinery.slurm import lease
from machinery.slurm.accounting import JobRecord
from machinery.slurm.offload import Interrupted, _ignore_signals, cancel_on_signals
from machinery.slurm.transport import ConnectionLost, RemoteTimeout
from machinery.sweep.arraybase import KEY_PREFIX
from machinery.sweep import resubmit
from machinery.sweep.arraysubmit import Submitting, dry_run_text
from machinery.sweep.arraywatch import Watching
from machinery.sweep.record import PointResult, SweepRecord

__all__ = ["ArraySweep", "KEY_PREFIX", "dry_run_text"]


class ArraySweep(Submitting, Watching):
    """The parts (arraybase's docstring) run in order, under the offload's signal handling."""

    def run(self) -> SweepRecord:
        started = time.monotonic()
        try:
            with cancel_on_signals():
                self.transport.connect()
                self._probe()
                if self.job_id is None:
                    self._submit()
                with tempfile.TemporaryDirectory(prefix="mlops-sweep-") as tmp:
                    self._start_import(Path(tmp))
                    try:
                        state, records = self._watch()
                        results = self._collect(state, records)
                    except BaseException:
                        self._stop_import(abandon=True)  # a cancel waits for no import
                        raise
                    self._stop_import()
                self._release()
        except Interrupted as exc:
            _ignore_signals()
            self._cancel()
            self.transport.close()
            raise exc from None
        except ConnectionLost as exc:
            still = f"; array {self.job_id} may still run: rerun to reattach"
            raise UserError(f"{exc}{still if self.job_id else ''}") from None
        except RemoteTimeout as exc:
            raise UserError(f"the login node did not answer: {exc}") from None
        finally:
            self.transport.close()
        self.timings["total"] = time.monotonic() - started
        return self._record(results, records)

    def _record(self, results: list[PointResult], records: dict[int, JobRecord]) -> SweepRecord:
        used = sum(r.total_cpu_s or 0.0 for r in records.values())
        alloc = sum(r.alloc_cpus * r.elapsed_s for r in records.values())
        # Without accounting the CPU time used is unknown: no E, never a made-up 0.
        known = bool(records) and all(r.total_cpu_s is not None for r in records.values())
        submits = [r.submit for r in records.values() if r.submit]
        ends = [r.end for r in records.values() if r.end]
        starts = [r.start for r in records.values() if r.start]
        wall = (max(ends) - min(submits)).total_seconds() if submits and ends else None
        if submits and starts:
            self.timings["queue_wait_first"] = (min(starts) - min(submits)).total_seconds()
        return SweepRecord(
            stages=[s.stage.name for s in self.request.stages],
            transport=self.transport.name,
            max_parallel=self.request.max_parallel,
            grid=self.request.grid,
            points=results,
            identity=self.key,
            job_id=self.job_id,
            reattached=self.reattached,
            resubmitted=self.resubmitted,
            arrays=[
                {"job_id": job, "array": spec}
                for job, spec in resubmit.arrays(self.history, self.job_id or "", len(results))
            ],
            wall_s=wall,
            alloc_cpu_s=round(alloc, 3) if records else None,
            total_cpu_s=round(used, 3) if known else None,
            efficiency=round(used / alloc, 4) if alloc > 0 and known else None,
            timings_s={k: round(v, 3) for k, v in self.timings.items()},
        )

    def _release(self) -> None:
        lease.release(self.transport, self.layout, self.job_id, self.finished)

    def _cancel(self) -> None:
        lease.cancel(
            self.transport,
            self.layout,
            self.job_id,
            self.finished,
            self.settings.lease_ttl,
            self.say,
            noun="array",
            cancelled=" (every task not yet finished)",
        )
