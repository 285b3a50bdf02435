"""An array sweep's results: each finished point's outs staged out (one tar) and handed to
the importer as a DVC experiment, while the other tasks still run; the failed points' state,
reason and log tail; the points a rerun finds already imported kept as they are."""

from __future__ import annotations

import functools
import tarfile
import time
from pathlib import Path

from machinery.errors import UserError
from machinery.slurm.accounting import JobRecord, cpu_efficiency, is_final, report_from_record
from machinery.slurm.stage import REPORT_DIR
from machinery.sweep import arrayscript as ascript
from machinery.sweep import resubmit
from machinery.sweep.arraybase import ArrayBase
from machinery.sweep.arraystate import ArrayState
from machinery.sweep.copies import run
from machinery.sweep.importer import Importer
from machinery.sweep.record import PointResult

TAIL_LINES = 20
PENDING_REASONS = {"JobArrayTaskLimit", "Priority", "Resources", "BeginTime", "None"}
# What a state means when Slurm gives no reason: sacct's Reason of a preempted task is None.
NO_REASON = {"PREEMPTED": "preempted by a higher-priority job; a rerun submits it again"}


class Collecting(ArrayBase):
    def _collect(self, state: ArrayState, records: dict[int, JobRecord]) -> list[PointResult]:
        assert self.layout is not None
        results: list[PointResult] = []
        runs = resubmit.submissions(self.history, len(self.request.points))
        for point in self.request.points:
            st = state.states.get(point.index, "UNKNOWN")
            rec = records.get(point.index)
            result = PointResult(point.index, point.name, point.values, st)
            # squeue's reason on a task that ended is left over from its wait (JobArrayTaskLimit)
            result.reason = "" if st == "COMPLETED" else state.reasons.get(point.index, "")
            if result.reason in PENDING_REASONS:
                result.reason = ""
            result.task_id = f"{self._owner(point.index)}_{point.index}"
            result.restarts = state.requeues.get(point.index, 0)
            result.resubmits = runs[point.index] - 1
            if rec is not None:
                result.exit_code = rec.exit_code
                if rec.base_state != "COMPLETED" and rec.reason:
                    result.reason = rec.reason
                result.elapsed_s = rec.elapsed_s
                result.total_cpu_s = rec.total_cpu_s
                result.alloc_cpus = rec.alloc_cpus
                if rec.total_cpu_s is not None:
                    result.cpu_efficiency = cpu_efficiency(
                        rec.total_cpu_s, rec.elapsed_s, rec.alloc_cpus
                    )
            if st != "COMPLETED" and result.reason in ("", "NonZeroExitCode"):
                why = f"exit code {result.exit_code}" if result.exit_code else ""
                result.reason = NO_REASON.get(st) or why or st
            results.append(result)
        ok = [r for r in results if r.state == "COMPLETED"]
        failed = [r for r in results if r.state != "COMPLETED"]
        if failed:
            self._tails(failed)
        if self.kept:
            self.say(f"{len(self.kept)} point(s) already imported")
        # The points not handed over while the array ran (all of them after a reattach to a
        # finished array): staged out and imported now.
        rest = [r.index for r in ok if r.index not in self.kept and r.index not in self.futures]
        rest = [i for i in rest if i not in self.missing]
        if rest:
            self._hand_over(rest, records)
        t1 = time.monotonic()
        for r in ok:
            before = self.kept.get(r.index)
            if before is not None:
                r.metrics, r.experiment = before.metrics, before.experiment
            elif self.missing.get(r.index):
                r.state = "FAILED"
                r.reason = f"did not produce {', '.join(self.missing[r.index])}"
            elif r.index in self.futures:
                imported = self.futures[r.index].result()
                if imported.error:
                    r.state, r.reason = "FAILED", imported.error
                else:
                    r.metrics, r.experiment = imported.metrics, imported.experiment
        # Only the import not overlapped with the array's run adds to the sweep's wall time.
        self.timings["import"] = time.monotonic() - t1
        return results

    def _find_kept(self) -> None:
        """The points this array already imported (a rerun): their experiments are still
        there, so they are neither staged out nor saved again."""
        prior = self.prior
        if prior is None or prior.identity != self.key:
            return
        for point in self.request.points:
            before = next((p for p in prior.points if p.index == point.index and p.ok), None)
            if before is None or before.name != point.name or not before.experiment:
                continue
            try:
                run(["git", "rev-parse", "--verify", "-q", before.experiment], self.root)
            except UserError:
                continue
            self.kept[point.index] = before

    def _start_import(self, tmp: Path) -> None:
        self._find_kept()
        self.scratch = tmp / "outs"
        self.scratch.mkdir()
        self.importer = Importer(
            self.root,
            self.copy_files,
            self.request.params,
            self.cache,
            tmp,
            [s.stage.name for s in self.request.stages],
            self._made(),
            [m for s in self.request.stages for m in s.metrics],
        )
        self.importer.start(len(self.request.points) - len(self.kept))

    def _stop_import(self, abandon: bool = False) -> None:
        if self.importer is not None:
            self.importer.close(abandon)
            self.importer = None

    def _hand_over_done(self, state: ArrayState) -> None:
        """The tasks that ended well since the last poll, with their sacct figures in: staged
        out (one tar) and handed to the importer while the others still run."""
        new = [
            i
            for i, st in state.states.items()
            if st == "COMPLETED" and i not in self.futures and i not in self.kept
        ]
        new = [i for i in new if i not in self.missing]
        if not new:
            return
        records = self.fresh_records = self._records()
        ready = [i for i in new if is_final(records.get(i))]
        if ready:
            self._hand_over(ready, records)

    def _hand_over(self, indexes: list[int], records: dict[int, JobRecord]) -> None:
        assert self.importer is not None
        t0 = time.monotonic()
        missing = self._stage_out(indexes, self._made(), self.scratch)
        self.timings["stage_out"] = self.timings.get("stage_out", 0.0) + time.monotonic() - t0
        for i in indexes:
            if missing.get(i):
                self.missing[i] = missing[i]
                continue
            point = self.request.points[i]
            self.futures[i] = self.importer.submit(
                point.name,
                point.params(self.request.params),
                self.scratch / str(i),
                functools.partial(self._point_report, i, records.get(i)),
            )

    def _point_report(self, index: int, rec: JobRecord | None, where: Path) -> None:
        """A swept stage that declares the offload's record gets one per point, from sacct."""
        if rec is None:
            return
        for s in self.request.stages:
            if any(Path(o).is_relative_to(REPORT_DIR) for o in s.stage.outs):
                report_from_record(
                    rec,
                    stage=s.stage.name,
                    transport=self.transport.name,
                    identity=f"{self.key}_{index}",
                    reattached=self.reattached,
                    timings={},
                    accounting_error=self.no_accounting or None,
                ).write(where)

    def _tails(self, failed: list[PointResult]) -> None:
        assert self.layout is not None
        res = self.transport.run(
            ascript.render_tails(self.layout, [r.index for r in failed], TAIL_LINES), timeout=60
        )
        current: PointResult | None = None
        by_index = {r.index: r for r in failed}
        for line in res.text.splitlines():
            if line.startswith("@@TAIL@@ "):
                current = by_index.get(int(line.split()[1]))
            elif current is not None:
                current.log_tail.append(line)

    def _stage_out(
        self, indexes: list[int], outs: list[str], scratch: Path
    ) -> dict[int, list[str]]:
        assert self.layout is not None
        paths = [f"{i}/{o}" for i in indexes for o in outs]
        if not paths:
            return {}
        errors: list[str] = []

        def sink(stream: object) -> None:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    tar.extractall(scratch, filter="data")
            except (tarfile.TarError, OSError) as exc:
                errors.append(str(exc))

        res = self.transport.run(ascript.render_array_stage_out(self.layout, paths), sink=sink)
        if res.rc != 0 or errors:
            why = errors[0] if errors else res.error_line
            raise UserError(f"copying the points' outs back failed: {why}")
        missing: dict[int, list[str]] = {}
        for line in res.err.decode(errors="replace").splitlines():
            if line.startswith("missing: "):
                i, _, out = line.removeprefix("missing: ").partition("/")
                missing.setdefault(int(i), []).append(out)
        return missing
