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

import functools
import hashlib
import json
import secrets
import sys
import tarfile
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import yaml

from machinery.errors import UserError
from machinery.files import sha256_file
from machinery.provenance import stage_env
from machinery.slurm import diskspace, envscript, remote, script
from machinery.slurm.accounting import (
    SACCT_FORMAT,
    TERMINAL,
    JobRecord,
    cpu_efficiency,
    is_final,
    report_from_record,
)
from machinery.slurm.offload import Interrupted, _ignore_signals, cancel_on_signals
from machinery.slurm.polling import fields
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.stage import REPORT_DIR, code_files, expand
from machinery.slurm.staging import CachePlan, Snapshot, human
from machinery.slurm.connect import make_transport
from machinery.slurm.transport import ConnectionLost, RemoteTimeout, Transport
from machinery.sweep import arrayscript as ascript
from machinery.sweep import resubmit
from machinery.sweep.arraystate import ArrayState, all_final, parse_array_sacct, states_from_sacct
from machinery.sweep.copies import PARAMS_FILE, run
from machinery.sweep.importer import Imported, Importer
from machinery.sweep.record import PointResult, SweepRecord, load_record

TAIL_LINES = 20
KEY_PREFIX = "sweep-"
PENDING_REASONS = {"JobArrayTaskLimit", "Priority", "Resources", "BeginTime", "None"}


class ArraySweep:
    def __init__(
        self,
        settings: SlurmSettings,
        root: Path,
        request: object,
        files: list[str],
        extra: list[str],
        cache: str,
        transport: Transport | None = None,
    ):
        from machinery.sweep.run import SweepRequest

        assert isinstance(request, SweepRequest)
        self.settings = settings
        self.root = root
        self.request = request
        self.cache = cache
        self.transport = transport or make_transport(settings)
        self.nonce = secrets.token_hex(4)
        # The code snapshot as a single offload's (no pipeline outs, no DVC state), plus the
        # shared deps; params.yaml comes per point.
        self.files = sorted(
            {f for f in code_files(root) if f != PARAMS_FILE} | set(expand(root, extra))
        )
        self.extra = extra
        # A point's copy gets the workspace as it is (dvc.lock included), not the snapshot.
        self.copy_files = sorted(set(files) | set(expand(root, extra)))
        self.job_id: str | None = None
        self.layout: script.Layout | None = None
        self.reattached = False
        self.finished = False
        self.timings: dict[str, float] = {}
        self.key = KEY_PREFIX + self.identity()
        self.prior: SweepRecord | None = None
        try:
            self.prior = load_record(root)
        except UserError:
            pass
        # Points handed to the importer as their task ended (while the others still run).
        self.importer: Importer | None = None
        self.scratch = Path()
        self.futures: dict[int, Future[Imported]] = {}
        self.missing: dict[int, list[str]] = {}
        self.kept: dict[int, PointResult] = {}
        # After a resubmission: point index → the array whose task for it counts, the states
        # of the points an earlier array finished, and the run dir's array history.
        self.owner: dict[int, str] = {}
        self.earlier: dict[int, str] = {}
        self.history = ""
        self.resubmitted: list[int] = []

    def say(self, message: str) -> None:
        print(f"[sweep] {message}", file=sys.stderr, flush=True)

    def point_params(self, index: int) -> str:
        point = self.request.points[index]
        return yaml.safe_dump(point.params(self.request.params), sort_keys=False)

    def commands(self) -> list[tuple[str, str]]:
        return [(s.stage.name, s.cmd) for s in self.request.stages]

    def identity(self) -> str:
        """The grid's points (their whole params files: so the params outside the grid too),
        the stages' commands, the code snapshot and the deps."""
        digest = hashlib.sha256()
        header = {
            "commands": self.commands(),
            "points": [self.point_params(p.index) for p in self.request.points],
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        for rel in self.files:
            digest.update(f"\0{rel}\0{sha256_file(self.root / rel)}".encode())
        return digest.hexdigest()[:16]

    # --- the whole run ---------------------------------------------------------------------

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

    def _probe(self) -> None:
        res = self.transport.run(remote.render_probe(self.settings.workdir, self.key, self.nonce))
        if res.rc != 0:
            raise UserError(f"login node: {res.error_line}")
        info = fields(res.text)
        workdir = self.settings.workdir
        if workdir == "~" or workdir.startswith("~/"):
            workdir = info["home"] + workdir[1:]
        self.layout = script.Layout(workdir, self.key, self.nonce)
        if not info.get("job"):
            return
        self.job_id = info["job"]
        redo = self._survey()
        if redo:
            self._resubmit(redo)
            self._survey()
            return
        self.reattached = True
        self.say(f"reattaching to array {self.job_id} (identity {self.key})")

    def _owner(self, index: int) -> str:
        return self.owner.get(index, self.job_id or "")

    def _survey(self) -> list[int]:
        """Each point's latest task's state, over every array of this identity; returns the
        points to submit again: those not COMPLETED once every task has ended (as a single
        offload replaces a job that ended FAILED, PREEMPTED, ...), none while any still runs."""
        assert self.layout is not None and self.job_id is not None
        n = len(self.request.points)
        self.history = self.transport.run(resubmit.render_history(self.layout), timeout=60).text
        self.owner = resubmit.owners(self.history, self.job_id, n)
        states: dict[int, str] = {}
        for job in sorted(set(self.owner.values())):
            st = ArrayState(n)
            if not self._poll(st, job):
                states_from_sacct(st, self._sacct(job), job)
            states.update({i: s for i, s in st.states.items() if self.owner.get(i) == job})
        self.earlier = {i: s for i, s in states.items() if self.owner[i] != self.job_id}
        # Resubmit only on a full, final picture: a task still running is watched (a later
        # rerun replaces it if it fails), and a silent controller must not resubmit the grid.
        if len(states) < n or any(s not in TERMINAL for s in states.values()):
            return []
        return [i for i in range(n) if states[i] != "COMPLETED"]

    def _resubmit(self, redo: list[int]) -> None:
        assert self.layout is not None and self.job_id is not None
        old, n, k = self.job_id, len(self.request.points), self.request.max_parallel
        cmd = resubmit.render_resubmit(self.layout, old, redo, n, k, self._made())
        res = self.transport.run(cmd, timeout=120)
        if res.rc == 3:
            why = res.error_line.removeprefix("sbatch: error: ")
            raise UserError(f"sbatch refused the array: {why}")
        if res.rc != 0:
            raise UserError(f"resubmitting on the login node failed: {res.error_line}")
        info = fields(res.text)
        if "attach" in info:
            self.job_id, self.reattached = info["attach"], True
            self.say(f"attached to array {self.job_id} submitted by a concurrent run")
            return
        self.job_id, self.resubmitted = info["submitted"], sorted(redo)
        names = ", ".join(self.request.points[i].name for i in self.resubmitted)
        self.say(
            f"array {old} of this identity ended with {len(redo)} of {n} point(s) not "
            f"completed ({names}); submitted array {self.job_id} over them "
            f"(--array={resubmit.spec(redo)}%{k}, identity {self.key})"
        )

    def script_text(self, layout: script.Layout, venv: str | None) -> str:
        first = self.request.stages[0].stage.name
        return ascript.render_array_script(
            self.settings,
            layout,
            self.commands(),
            len(self.request.points),
            self.request.max_parallel,
            venv,
            stage_env(first, self.root),
        )

    def _submit(self) -> None:
        assert self.layout is not None
        layout, env = self.layout, self.settings.env
        if env.kind == "apptainer":
            raise UserError("sweeps run with env.kind venv or none (apptainer: not yet)")
        scripts: dict[str, str] = {}
        venv, setup = None, ""
        if env.kind == "venv":
            if not (self.root / env.lock).is_file():
                raise UserError(f"{env.lock}: lock file not found (env.lock in the Slurm settings)")
            venv = layout.venv(env, (self.root / env.lock).read_bytes())
            scripts[script.ENV_NAME] = envscript.render_env_build(env, layout, env.lock, venv)
            setup = envscript.render_env_setup(env, layout, venv)
        scripts[script.SCRIPT_NAME] = self.script_text(layout, venv)
        scripts[script.SUBMIT_NAME] = script.render_submit(
            layout, setup, None, self.settings.prune_after_days
        )
        for point in self.request.points:
            scripts[f"{ascript.POINTS_DIR}/{point.index}/{PARAMS_FILE}"] = self.point_params(
                point.index
            )
        plan = CachePlan()  # the shared deps travel once per array anyway
        snapshot = Snapshot(self.root, self.files, scripts, plan)
        t0 = time.monotonic()
        res = self.transport.run(
            remote.render_stage_in(layout, self.settings.min_free_mb),
            feed=snapshot.feed,
            timeout=env.build_timeout + 600,
        )
        self.timings["stage_in"] = time.monotonic() - t0
        info = fields(res.text)
        if diskspace.refused(res.rc, res.text):
            free = diskspace.free_kb(res.text)
            raise UserError(
                diskspace.full_line(layout.runs, free, self.settings.min_free_mb)
                + ": free space there, or lower min_free_mb in slurm.yaml"
            )
        if res.rc == 3:
            raise UserError(
                f"sbatch refused the array: {res.error_line.removeprefix('sbatch: error: ')}"
            )
        if res.rc != 0:
            raise UserError(f"staging in on the login node failed: {res.error_line}")
        if "cancelled" in res.text.split():
            raise UserError("the submission was cancelled")
        if "attach" in info:
            self.job_id, self.reattached = info["attach"], True
            self.say(f"attached to array {self.job_id} submitted by a concurrent run")
            return
        self.job_id = info["submitted"]
        n, k = len(self.request.points), self.request.max_parallel
        self.say(
            f"staged in {human(snapshot.sent)}; submitted array {self.job_id} "
            f"(--array=0-{n - 1}%{k}, identity {self.key})"
        )

    def _poll(self, state: ArrayState, job: str | None = None) -> bool:
        """One squeue round; False when squeue no longer knows the array."""
        assert self.layout is not None and self.job_id is not None
        job = job or self.job_id
        res = self.transport.run(ascript.render_array_poll(job, self.layout), timeout=60)
        head, _, body = res.text.partition("\n")
        if head != "rc=0":
            return True  # the controller did not answer: try again (sacct is not live)
        if not body.strip():
            return False
        for i in state.update_squeue(body, job):
            self.say(f"task {job}_{i} requeued; it runs again")
        return True

    def _sacct(self, job: str | None = None) -> str:
        assert self.job_id is not None
        job = job or self.job_id
        res = self.transport.run(ascript.render_array_sacct(job, SACCT_FORMAT), timeout=60)
        return res.text.split("@@RC@@=")[0]

    def _records(self) -> dict[int, JobRecord]:
        """sacct's record of each point's latest task (from an earlier array after a
        resubmission)."""
        out: dict[int, JobRecord] = {}
        for job in sorted(set(self.owner.values()) | {self.job_id or ""}):
            recs = parse_array_sacct(self._sacct(job), job)
            out.update({i: r for i, r in recs.items() if self._owner(i) == job})
        return out

    def _watch(self) -> tuple[ArrayState, dict[int, JobRecord]]:
        state = ArrayState(len(self.request.points))
        state.states.update(self.earlier)  # the points an earlier array finished
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
            self._hand_over_done(state)
            if state.final or (not known and len(state.states) == state.points):
                break
            if not known and not state.states:
                raise UserError(f"array {self.job_id}: neither squeue nor sacct knows it")
            time.sleep(self.settings.poll_interval)
        self.timings["watch"] = time.monotonic() - t0
        self.finished = True
        t1 = time.monotonic()
        deadline = t1 + self.settings.accounting_wait
        records = self._records()
        while not all_final(records, state.points) and time.monotonic() < deadline:
            time.sleep(0.5)
            records = self._records()
        self.timings["accounting"] = time.monotonic() - t1
        return state, records

    # --- results ---------------------------------------------------------------------------

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
                result.reason = f"exit code {result.exit_code}" if result.exit_code else st
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

    def _made(self) -> list[str]:
        """The outs a task makes (the Slurm record is written here, from sacct)."""
        outs = [o for s in self.request.stages for o in s.stage.outs]
        return [o for o in outs if not Path(o).is_relative_to(REPORT_DIR)]

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
        records = self._records()
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

    def _record(self, results: list[PointResult], records: dict[int, JobRecord]) -> SweepRecord:
        used = sum(r.total_cpu_s or 0.0 for r in records.values())
        alloc = sum(r.alloc_cpus * r.elapsed_s for r in records.values())
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
            wall_s=wall,
            alloc_cpu_s=round(alloc, 3) if records else None,
            total_cpu_s=round(used, 3) if records else None,
            efficiency=round(used / alloc, 4) if alloc > 0 else None,
            timings_s={k: round(v, 3) for k, v in self.timings.items()},
        )

    # --- leases ----------------------------------------------------------------------------

    def _release(self) -> None:
        if self.layout is None or self.job_id is None:
            return
        try:
            self.transport.run(remote.render_release(self.layout, self.finished), timeout=30)
        except Exception:  # noqa: BLE001 - the run's outcome is already decided
            pass

    def _cancel(self) -> None:
        if self.layout is None:
            return
        if self.finished:
            self.say(f"array {self.job_id} had already ended: nothing to cancel")
            return
        what = f"array {self.job_id}" if self.job_id else "the submission"
        cmd = remote.render_cancel(self.job_id, self.layout, self.settings.lease_ttl)
        try:
            res = self.transport.run(cmd, timeout=30)
        except Exception as exc:  # noqa: BLE001 - report and still exit non-zero
            self.say(f"could not cancel {what}: {exc}")
            return
        held = fields(res.text).get("held")
        if res.rc == 0 and held:
            self.say(f"left {what} running: {held} other run(s) still wait for it")
        elif res.rc == 0:
            self.say(f"cancelled {what} (every task not yet finished)")
        else:
            self.say(f"could not cancel {what}: {res.error_line}")


def dry_run_text(root: Path, request: object, settings: SlurmSettings) -> str:
    """The points and the array script, as ``--dry-run`` prints them: nothing is submitted."""
    from machinery.sweep.run import SweepRequest

    assert isinstance(request, SweepRequest)
    home = f"/home/{settings.ssh_user or 'USER'}"
    workdir = home + settings.workdir[1:] if settings.workdir.startswith("~") else settings.workdir
    layout = script.Layout(workdir, KEY_PREFIX + "<identity>", "dryrun")
    venv = f"{workdir}/venvs/<lock hash>" if settings.env.kind == "venv" else None
    lines = [f"# {len(request.points)} points (one array task each):"]
    for p in request.points:
        values = " ".join(f"{k}={v}" for k, v in p.values.items())
        lines.append(f"#   {p.index}: {p.name}  ({values})")
    text = ascript.render_array_script(
        settings,
        layout,
        [(s.stage.name, s.cmd) for s in request.stages],
        len(request.points),
        request.max_parallel,
        venv,
        {"MLOPS_CODE_COMMIT": "<commit>"},
    )
    return "\n".join(lines) + "\n" + text
