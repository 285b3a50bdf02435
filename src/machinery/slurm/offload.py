"""Offload one stage to Slurm: stage in, submit (or reattach), watch, stage out, account."""

from __future__ import annotations

import codecs
import dataclasses
import collections
import io
import secrets
import shutil
import signal
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from machinery.errors import UserError
from machinery.modelcard import code_commit
from machinery.slurm import script
from machinery.slurm.accounting import (
    SACCT_FORMAT,
    TERMINAL,
    JobRecord,
    SlurmReport,
    is_final,
    parse_sacct,
    report_from_record,
)
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.stage import Stage, code_files, expand, identity, staged_outs
from machinery.slurm.transport import (
    ConnectionLost,
    RemoteTimeout,
    SshTransport,
    Transport,
    make_transport,
)

TAIL_LINES = 20


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


def _fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


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
        self.cold_env = False
        self.final_reason = ""
        self.node_times: dict[str, str] = {}
        self.submitted_at: float | None = None  # wall clock of the login node at sbatch
        self.detected_at: float | None = None  # wall clock here when the end was seen
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._offset = 0
        self._last = ("", "")

    def say(self, message: str) -> None:
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
        self.key = identity(self.root, self.stage, self.cmd, files)
        try:
            with cancel_on_signals():
                try:
                    with self.phase("connect"):
                        self.transport.connect()
                    retire = self._probe()
                    if self.job_id is None:
                        self._submit(files, retire)
                    while True:
                        self._watch()
                        with self.phase("accounting"):
                            record = self._account()
                        if record.base_state in TERMINAL:
                            break
                    self._emit(b"", final=True)
                    ok = record.base_state == "COMPLETED" and record.exit_code == 0
                    if ok:
                        with self.phase("stage_out"):
                            self._stage_out()
                except Interrupted as exc:
                    _ignore_signals()
                    self._cancel()
                    raise exc from None
                except ConnectionLost as exc:
                    still = f"; job {self.job_id} may still run: rerun to reattach"
                    raise UserError(f"{exc}{still if self.job_id else ''}") from None
                except RemoteTimeout as exc:
                    raise UserError(f"the login node did not answer: {exc}") from None
        finally:
            self.transport.close()
        self.timings["total"] = time.monotonic() - started
        report = report_from_record(
            record,
            stage=self.stage.name,
            transport=self.transport.name,
            identity=self.key,
            reattached=self.reattached,
            timings={**self.timings, **self._node_timings()},
        )
        report.write(self.root)
        if not ok:
            self._fail(record)
        return report

    def _node_timings(self) -> dict[str, float]:
        """Queue wait, run and detection latency from wall clocks (login node, compute node,
        here): finer than sacct's whole seconds, exact when they share a clock."""
        start, end = self.node_times.get("start"), self.node_times.get("end")
        if self.submitted_at is None or start is None or end is None:
            return {}
        out = {"queue_wait": float(start) - self.submitted_at, "run": float(end) - float(start)}
        if self.detected_at is not None:
            out["detect"] = self.detected_at - float(end)
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

    def _probe(self) -> str | None:
        """Find the job of this identity; return a finished-badly job id to replace."""
        res = self.transport.run(script.render_probe(self.settings.workdir, self.key))
        if res.rc != 0:
            raise UserError(f"login node: {res.error_line}")
        info = _fields(res.text)
        workdir = self.settings.workdir
        if workdir == "~" or workdir.startswith("~/"):
            workdir = info["home"] + workdir[1:]
        self.layout = script.Layout(workdir, self.key, secrets.token_hex(4))
        job = info.get("job")
        if not job:
            return None
        # A job id from before a cluster reinstall may name someone else's job: check the name.
        state, _, name = (info.get("squeue") or info.get("sacct") or "").partition("|")
        state = state.split(" ")[0] if name == script.JOB_PREFIX + self.key else ""
        if not state or state in script.RETRYABLE:
            self.say(f"job {job} of this identity ended {state or 'unknown'}; submitting again")
            return job
        self.job_id, self.reattached = job, True
        self.say(f"reattaching to job {job} ({state}), identity {self.key}")
        return None

    def _snapshot(
        self, files: list[str], layout: script.Layout, venv: str | None, retire: str | None
    ) -> bytes:
        buf = io.BytesIO()
        env = self.settings.env
        # The snapshot has no .git: tell the stage which commit it is (the model card records it).
        commit = {"MLOPS_CODE_COMMIT": code_commit()}
        job = script.render_job_script(
            self.settings, self.stage.name, layout, self.cmd, venv, commit
        )
        setup = ""
        if venv is not None:
            setup = script.render_env_setup(env, layout, env.lock, venv)
        submit = script.render_submit(layout, setup, retire)
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in files:
                tar.add(self.root / rel, arcname=rel, recursive=False)
            for name, text in ((script.SCRIPT_NAME, job), (script.SUBMIT_NAME, submit)):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o700, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def _submit(self, files: list[str], retire: str | None) -> None:
        assert self.layout is not None
        layout = self.layout
        env = self.settings.env
        venv = None
        if env.kind == "venv":
            venv = layout.venv(env, (self.root / env.lock).read_bytes())
        with self.phase("stage_in"):
            payload = self._snapshot(files, layout, venv, retire)
            res = self.transport.run(script.render_stage_in(layout), stdin=payload)
        info = _fields(res.text)
        if "t_env_start" in info and "t_env_end" in info:
            env_s = float(info["t_env_end"]) - float(info["t_env_start"])
            self.timings["environment"] = env_s
            self.timings["stage_in"] -= env_s
        if "env" in info:
            self.cold_env = True
            self.say(f"built the job environment {venv} in {self.timings['environment']:.1f} s")
        if res.rc == 3:
            why = res.error_line.removeprefix("sbatch: error: ")
            raise UserError(f"sbatch refused the job: {why}")
        if res.rc != 0:
            raise UserError(f"staging in on the login node failed: {res.error_line}")
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

    def _emit(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        if not text:
            return
        self.out.write(text)
        self.out.flush()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self._tail.extend(lines)
        if final and self._partial:
            self._tail.append(self._partial)
            self._partial = ""

    def _poll(self) -> tuple[int, str, bytes]:
        """One squeue + log round trip: squeue's exit code and line, and the new log bytes."""
        assert self.layout is not None and self.job_id is not None
        res = self.transport.run(script.render_poll(self.job_id, self.layout, self._offset))
        head, _, data = res.out.partition(b"@@LOG@@\n")
        self._offset += len(data)
        lines = head.decode(errors="replace").splitlines()
        rc = int(lines[0].removeprefix("rc=")) if lines and lines[0].startswith("rc=") else 1
        return rc, (lines[1].strip() if len(lines) > 1 else ""), data

    def _watch(self) -> None:
        assert self.job_id is not None
        watch_started = time.monotonic()
        interval = min(self.settings.poll_interval, 0.1)
        failures = 0
        while True:
            with self.phase("watch"):
                rc, line, data = self._poll()
            if rc != 0 and "Invalid job id" not in line:
                self._emit(data)
                # The controller did not answer (busy, restarting): keep the last state.
                failures += 1
                if failures in (10, 100):
                    self.say(f"squeue keeps failing: {line}")
                time.sleep(interval)
                continue
            failures = 0
            state, reason, node = (line.split("|") + ["", ""])[:3] if rc == 0 else ("", "", "")
            base = state.split(" ")[0]
            if (base, reason) != self._last and base:
                where = f" on {node}" if base == "RUNNING" and node else ""
                why = f" ({reason})" if base == "PENDING" and reason not in ("", "None") else ""
                self.say(f"job {self.job_id}: {base}{why}{where}")
                self._last = (base, reason)
            self._emit(data)
            # No line: the controller forgot the job (past MinJobAge); sacct has the rest.
            if not base or base in TERMINAL:
                # sacct keeps no reason for a finished job; squeue's last word is the useful one.
                self.final_reason = "" if reason in ("", "None") else reason
                self.detected_at = time.time()
                break
            # Poll fast while a short job may end any moment (a poll is ~10 ms over one SSH
            # connection), then back off to the setting.
            waited = time.monotonic() - watch_started
            if waited > 30:
                interval = self.settings.poll_interval
            elif waited > 10:
                interval = min(self.settings.poll_interval, 0.25)
            time.sleep(interval)
        # Slurm may flush the last output after the state changed.
        self._emit(self._poll()[2])

    def _account(self) -> JobRecord:
        assert self.job_id is not None
        assert self.layout is not None
        cmd = script.render_accounting(self.job_id, self.layout, SACCT_FORMAT)
        deadline = time.monotonic() + 10
        record: JobRecord | None = None
        while True:
            res = self.transport.run(cmd)
            sacct, _, times = res.text.partition("@@TIMES@@\n")
            self.node_times = _fields(times)
            record = parse_sacct(sacct, self.job_id)
            if is_final(record) or (record is not None and time.monotonic() > deadline):
                break
            if record is not None and record.base_state not in TERMINAL:
                if time.monotonic() > deadline - 7:
                    break  # sacct says the job still runs: back to watching it
            if time.monotonic() > deadline:
                raise UserError(f"no accounting record for job {self.job_id}: {res.error_line}")
            time.sleep(0.05)
        assert record is not None
        if not record.reason and self.final_reason:
            record = dataclasses.replace(record, reason=self.final_reason)
        return record

    def _stage_out(self) -> None:
        assert self.layout is not None
        outs = staged_outs(self.stage)
        if not outs:
            return
        res = self.transport.run(script.render_stage_out(self.layout, outs))
        if res.rc != 0:
            raise UserError(
                f"job {self.job_id} completed but its outs are missing: {res.error_line}"
            )
        for rel in outs:
            path = self.root / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        try:
            with tarfile.open(fileobj=io.BytesIO(res.out), mode="r:") as tar:
                tar.extractall(self.root, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise UserError(f"copying the outs of job {self.job_id} back failed: {exc}") from None
        missing = [o for o in outs if not (self.root / o).exists()]
        if missing:
            raise UserError(f"job {self.job_id} did not produce {', '.join(missing)}")

    def _cancel(self) -> None:
        if self.layout is None:
            return
        what = f"job {self.job_id}" if self.job_id else "the submission"
        if isinstance(self.transport, SshTransport):
            # A cancelled CI job has seconds before it is killed: do not wait minutes for SSH.
            self.transport.reconnect_timeout = 20.0
        try:
            res = self.transport.run(script.render_cancel(self.job_id, self.layout), timeout=30)
        except Exception as exc:  # noqa: BLE001 - report and still exit non-zero
            self.say(f"could not cancel {what}: {exc}")
            return
        if res.rc == 0:
            self.say(f"cancelled {what}")
        else:
            self.say(f"could not cancel {what}: {res.error_line}")

    def _fail(self, record: JobRecord) -> None:
        if self._tail:
            self.say(f"last lines of {script.LOG_NAME}:")
            for line in self._tail:
                print(f"    {line}", file=self.log)
        code = f"exit code {record.exit_code}" + (
            f", signal {record.signal}" if record.signal else ""
        )
        reason = f", reason {record.reason}" if record.reason not in ("", "None") else ""
        raise JobFailed(f"Slurm job {record.job_id} {record.state} ({code}{reason})")
