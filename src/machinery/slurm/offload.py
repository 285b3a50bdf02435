"""Offload one stage to Slurm: the orchestration of stage-in, submit (or reattach), watch,
stage-out and accounting.

The parts live apart: ``staging`` (tar streams both ways, the deps cache), ``polling``
(squeue and sacct), ``logstream`` (the job's log into the CI log), ``script`` (every shell
line the cluster runs) and ``transport`` (how those lines reach the login node).
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from machinery.errors import UserError
from machinery.provenance import stage_env
from machinery.slurm import chimage, diskspace, envscript, lease, remote, script
from machinery.slurm.accounting import TERMINAL, JobRecord, SlurmReport, report_from_record
from machinery.slurm.logstream import LogStream
from machinery.slurm.polling import Accounted, Watcher, account, fields
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.stage import REPORT_DIR, Stage, code_files, expand, identity, staged_outs
from machinery.slurm.staging import CachePlan, Snapshot, human, stage_out
from machinery.slurm.connect import make_transport
from machinery.slurm.transport import ConnectionLost, RemoteTimeout, Transport

TAIL_LINES = 20
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


class JobFailed(UserError):
    """The job ended in a state other than COMPLETED."""

    exit_code = 1


class Interrupted(UserError):
    """SIGTERM/SIGINT (a cancelled CI job): the Slurm job was cancelled."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


@contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into ``Interrupted`` so the job is cancelled on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _ignore_signals() -> dict[int, object]:
    return {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}


class Offload:
    def __init__(
        self,
        settings: SlurmSettings,
        stage: Stage,
        cmd: list[str],
        root: Path,
        out: TextIO | None = None,
        log: TextIO | None = None,
        transport: Transport | None = None,
    ):
        self.settings = settings
        self.stage = stage
        self.cmd = cmd
        self.root = root
        self.out = out or sys.stdout
        self.log = log or sys.stderr
        self.transport = transport or make_transport(settings)
        self.timings: dict[str, float] = {}
        self.job_id: str | None = None
        self.layout: script.Layout | None = None
        self.reattached = False
        self.job_done = False
        self.submitted_at: float | None = None  # wall clock of the login node at sbatch
        self.nonce = secrets.token_hex(4)
        self.tail: list[str] = []
        self.logs: LogStream | None = None  # the job's log, once it is being streamed
        self.disk_full = ""  # the line saying so, when a failed job left the disk full
        self.image: chimage.LocalImage | None = None

    def say(self, message: str) -> None:
        if self.logs is not None:
            self.logs.break_line()  # a status line starts a line of its own in the CI log
        print(f"[slurm] {message}", file=self.log, flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started

    # --- the whole run ------------------------------------------------------------------

    def run(self) -> SlurmReport:
        started = time.monotonic()
        files = self._files()
        if self.settings.env.kind == "charliecloud":
            # Before anything is sent: a missing image is one line, and its digest is part
            # of the job's identity (a new image is a new job, not a reattach).
            with self.phase("image"):
                self.image = chimage.resolve(self.settings.env.image)
        image_id = self.image.image_id if self.image else None
        self.key = identity(self.root, self.stage, self.cmd, files, image_id)
        # A record left by another run (another identity) must never pass for this one's.
        (self.root / REPORT_DIR / f"{self.stage.name}.json").unlink(missing_ok=True)
        plan = CachePlan()
        if self.settings.cache_deps:
            plan = CachePlan.of(self.root, expand(self.root, self.stage.deps))
        try:
            with cancel_on_signals():
                try:
                    with self.phase("connect"):
                        self.transport.connect()
                    retire = self._probe(plan)
                    if self.job_id is None:
                        self._submit(files, retire, plan)
                    acc, watcher = self._follow()
                except (ConnectionLost, RemoteTimeout, Interrupted):
                    raise
                except UserError:
                    self._release()
                    raise
                self._release()
        except Interrupted as exc:
            _ignore_signals()
            self._cancel()
            self.transport.close()
            raise exc from None
        except ConnectionLost as exc:
            still = f"; job {self.job_id} may still run: rerun to reattach"
            raise UserError(f"{exc}{still if self.job_id else ''}") from None
        except RemoteTimeout as exc:
            raise UserError(f"the login node did not answer: {exc}") from None
        finally:
            self.transport.close()
        record = acc.record
        self.timings["total"] = time.monotonic() - started
        report = report_from_record(
            record,
            stage=self.stage.name,
            transport=self.transport.name,
            identity=self.key,
            reattached=self.reattached,
            timings={**self.timings, **self._node_timings(acc, watcher)},
            restarts=max(watcher.requeues, _int(acc.times.get("restarts"))),
            accounting_error=acc.error,
        )
        report.write(self.root)
        if not self._ok(record):
            self._fail(record)
        return report

    @staticmethod
    def _ok(record: JobRecord) -> bool:
        return record.base_state == "COMPLETED" and record.exit_code == 0

    def _follow(self) -> tuple[Accounted, Watcher]:
        """Watch until the job is final; bring the outs back as soon as squeue says
        COMPLETED (not only once sacct agrees: accounting may be down)."""
        assert self.layout is not None and self.job_id is not None
        self.logs = logs = LogStream(self.out)
        watcher = Watcher(self.transport, self.settings, self.layout, self.job_id, logs, self.say)
        staged = False
        while True:
            with self.phase("watch"):
                watcher.watch()
            if watcher.final_state == "COMPLETED" and not staged:
                self.job_done = True
                self._stage_out()
                staged = True
            with self.phase("accounting"):
                acc = account(self.transport, self.settings, self.layout, watcher, self.say)
            if acc.record.base_state in TERMINAL:
                break
        self.job_done = True
        if self._ok(acc.record) and not staged:
            self._stage_out()
        if not self._ok(acc.record):
            res = self.transport.run(remote.render_tail(self.layout, TAIL_LINES))
            free, _, tail = res.text.partition(remote.TAIL_MARK + "\n")
            self.tail = tail.splitlines()
            self._disk_full_after_failure(diskspace.free_kb(free))
        return acc, watcher

    def _disk_full_after_failure(self, free: int | None) -> None:
        """Say that the disk is full, and drop the failed run dir: its log is streamed
        already, and a rerun needs its space (the rerun would otherwise only set it aside)."""
        assert self.layout is not None
        min_mb = self.settings.min_free_mb
        if not diskspace.is_full(free, min_mb):
            return
        self.disk_full = diskspace.full_line(self.layout.runs, free, min_mb)
        self.say(self.disk_full)
        res = self.transport.run(diskspace.render_drop_run_dir(self.layout), timeout=120)
        if res.rc == 0:
            self.say(f"removed the failed job's run dir {self.layout.run_dir} to make room")
        else:
            self.say(f"could not remove {self.layout.run_dir}: {res.error_line}")

    def _node_timings(self, acc: Accounted, watcher: Watcher) -> dict[str, float]:
        """Queue wait, run and detection latency from wall clocks (login node, compute node,
        here): finer than sacct's whole seconds, exact when they share a clock."""
        start, end = acc.times.get("start"), acc.times.get("end")
        if self.submitted_at is None or start is None or end is None:
            return {}
        out = {"queue_wait": float(start) - self.submitted_at, "run": float(end) - float(start)}
        if watcher.detected_at is not None:
            out["detect"] = watcher.detected_at - float(end)
        return out

    # --- steps --------------------------------------------------------------------------

    def _files(self) -> list[str]:
        files = set(code_files(self.root))
        files.update(expand(self.root, self.stage.deps))
        files.update(p for p in self.stage.params if (self.root / p).is_file())
        env = self.settings.env
        if env.kind == "venv" and env.lock not in files:
            raise UserError(f"{env.lock}: lock file not found (env.lock in the Slurm settings)")
        return sorted(files)

    def _probe(self, plan: CachePlan) -> str | None:
        """Find the job of this identity; return a finished job's id to replace."""
        hashes = sorted(set(plan.hashes.values()))
        res = self.transport.run(
            remote.render_probe(self.settings.workdir, self.key, self.nonce, hashes)
        )
        if res.rc != 0:
            raise UserError(f"login node: {res.error_line}")
        info = fields(res.text)
        plan.have = {ln[5:] for ln in res.text.splitlines() if ln.startswith("have=")}
        workdir = self.settings.workdir
        if workdir == "~" or workdir.startswith("~/"):
            workdir = info["home"] + workdir[1:]
        self.layout = script.Layout(workdir, self.key, self.nonce)
        job = info.get("job")
        if not job:
            return None
        # A job id from before a cluster reinstall may name someone else's job: check the name.
        state, _, name = (info.get("squeue") or info.get("sacct") or "").partition("|")
        state = state.split(" ")[0] if name == script.JOB_PREFIX + self.key else ""
        if script.replaceable(state):
            self.say(f"job {job} of this identity ended {state or 'unknown'}; submitting again")
            return job
        if self.settings.resubmit and state not in ACTIVE:
            self.say(f"job {job} of this identity ended {state}; resubmitting (resubmit is on)")
            return job
        self.job_id, self.reattached = job, True
        extra = " (still active: resubmit replaces finished jobs only)" * self.settings.resubmit
        self.say(f"reattaching to job {job} ({state}), identity {self.key}{extra}")
        return None

    def _submit(self, files: list[str], retire: str | None, plan: CachePlan) -> None:
        assert self.layout is not None
        layout = self.layout
        env = self.settings.env
        venv = None
        # The snapshot has no .git: tell the stage which commit its inputs come from, and that
        # commit's time (the model card records both; machinery.provenance says why not HEAD).
        commit = stage_env(self.stage.name, self.root)
        scripts = {}
        setup = ""
        image_dir = None
        if self.image is not None:
            with self.phase("image"):
                image_dir = chimage.stage(
                    self.transport,
                    layout,
                    self.image,
                    self.say,
                    self.timings,
                    self.settings.prune_after_days,
                )
        if env.kind == "venv":
            venv = layout.venv(env, (self.root / env.lock).read_bytes())
            scripts[script.ENV_NAME] = envscript.render_env_build(env, layout, env.lock, venv)
            setup = envscript.render_env_setup(env, layout, venv)
        scripts[script.SCRIPT_NAME] = script.render_job_script(
            self.settings, self.stage.name, layout, self.cmd, venv, commit, image_dir
        )
        scripts[script.SUBMIT_NAME] = script.render_submit(
            layout, setup, retire, self.settings.prune_after_days
        )
        snapshot = Snapshot(self.root, files, scripts, plan)
        with self.phase("stage_in"):
            res = self.transport.run(
                remote.render_stage_in(layout, self.settings.min_free_mb),
                feed=snapshot.feed,
                timeout=env.build_timeout + 600,
            )
        info = fields(res.text)
        if "t_env_start" in info and "t_env_end" in info:
            env_s = float(info["t_env_end"]) - float(info["t_env_start"])
            self.timings["environment"] = env_s
            self.timings["stage_in"] -= env_s
        if "env" in info:
            self.say(f"built the job environment {venv} in {self.timings['environment']:.1f} s")
        diskspace.check_stage_in(res.rc, res.text, layout.runs, self.settings.min_free_mb)
        if res.rc == 3:
            why = res.error_line.removeprefix("sbatch: error: ")
            raise UserError(f"sbatch refused the job: {why}")
        if res.rc != 0:
            why = res.error_line.removeprefix("error: ")
            raise UserError(f"staging in on the login node failed: {why}")
        cached = sum((self.root / r).stat().st_size for r in plan.cached())
        from_cache = f" ({human(cached)} of deps from the cluster's cache)" if cached else ""
        self.say(f"staged in {human(snapshot.sent)}{from_cache}")
        if "cancelled" in res.text.split():
            raise UserError("the submission was cancelled")
        if "attach" in info:
            self.job_id, self.reattached = info["attach"], True
            self.say(f"attached to job {self.job_id} submitted by a concurrent run")
            return
        self.job_id = info["submitted"]
        self.submitted_at = float(info["t_submit"])
        part = self.settings.job.partition or "the default partition"
        self.say(f"submitted job {self.job_id} to {part} (identity {self.key})")

    def _stage_out(self) -> None:
        assert self.layout is not None
        outs = staged_outs(self.stage)
        if not outs:
            return
        with self.phase("stage_out"):
            try:
                stage_out(self.transport, self.layout, self.root, outs)
            except UserError as exc:
                raise UserError(f"job {self.job_id} completed, but {exc}") from None

    def _release(self) -> None:
        lease.release(self.transport, self.layout, self.job_id, self.job_done)

    def _cancel(self) -> None:
        lease.cancel(
            self.transport,
            self.layout,
            self.job_id,
            self.job_done,
            self.settings.lease_ttl,
            self.say,
            noun="job",
            cancelled="",
        )

    def _fail(self, record: JobRecord) -> None:
        if self.tail:
            self.say(f"last lines of {script.LOG_NAME}:")
            for line in self.tail:
                print(f"    {line}", file=self.log)
        code = f"exit code {record.exit_code}" + (
            f", signal {record.signal}" if record.signal else ""
        )
        reason = f", reason {record.reason}" if record.reason not in ("", "None") else ""
        full = f"; {self.disk_full}" if self.disk_full else ""
        raise JobFailed(f"Slurm job {record.job_id} {record.state} ({code}{reason}){full}")


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
