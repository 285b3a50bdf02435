"""Watching a job: squeue for its live state (with the log riding along), sacct for its record.

squeue is the live truth (sacct lags it by seconds); sacct is the final record. When sacct
cannot give one (slurmdbd down, or a cluster without accounting) the record is built from
squeue's last word and the exit code the job script wrote, and marked as such.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, timezone

from machinery.errors import UserError
from machinery.slurm import remote, script
from machinery.slurm.accounting import SACCT_FORMAT, TERMINAL, JobRecord, is_final, parse_sacct
from machinery.slurm.logstream import LogStream
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.transport import Transport

REQUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING"}
UNPARSEABLE_LIMIT = 5
NO_ACCOUNTING = "accounting storage is disabled"
PARTIAL_ROW_GRACE_S = 5.0


def poll_interval(settings: SlurmSettings, waited: float) -> float:
    """Seconds to the next squeue: fast while a short job may end any moment (a poll is ~10 ms
    over one SSH connection), then backing off to the setting. The single job's watcher and
    the sweep's array watcher share it, so an array does not notice its end later than a job."""
    if waited > 30:
        return settings.poll_interval
    if waited > 10:
        return min(settings.poll_interval, 0.25)
    return min(settings.poll_interval, 0.1)


def fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclasses.dataclass(frozen=True)
class PollReply:
    rc: int | None  # squeue's exit code; None when this poll asked only for the log
    line: str
    size: int | None
    data: bytes


def parse_poll(out: bytes) -> PollReply | None:
    head, sep, data = out.partition(b"@@LOG@@\n")
    lines = head.decode(errors="replace").split("\n")
    if not sep or len(lines) < 3 or not lines[0].startswith("rc="):
        return None
    rc_text = lines[0].removeprefix("rc=")
    size_text = lines[2].removeprefix("size=")
    return PollReply(
        rc=None if rc_text == "skip" else int(rc_text) if rc_text.isdigit() else 1,
        line=lines[1].strip(),
        size=int(size_text) if size_text.isdigit() else None,
        data=data,
    )


class Watcher:
    """Poll one job until squeue calls it finished (or forgets it), streaming its log."""

    def __init__(
        self,
        transport: Transport,
        settings: SlurmSettings,
        layout: script.Layout,
        job_id: str,
        log: LogStream,
        say: Callable[[str], None],
    ):
        self.transport = transport
        self.settings = settings
        self.layout = layout
        self.job_id = job_id
        self.log = log
        self.say = say
        self.final_state = ""
        self.final_reason = ""
        self.node = ""
        self.detected_at: float | None = None
        self.requeues = 0
        self._last = ("", "")
        self._started = False
        self._unparseable = 0
        self._failing_since: float | None = None
        self._warned_at = 0.0

    @property
    def call_timeout(self) -> int:
        return max(2, min(script.SLURM_CALL_TIMEOUT, int(self.settings.controller_warn_after)))

    def poll(self, squeue: bool = True) -> PollReply:
        cmd = remote.render_poll(
            self.job_id, self.layout, self.log.offset, squeue, self.call_timeout
        )
        res = self.transport.run(cmd)
        reply = parse_poll(res.out)
        if reply is None:
            self._unparseable += 1
            if self._unparseable >= UNPARSEABLE_LIMIT:
                text = (res.text or res.err.decode(errors="replace")).strip()
                raise UserError(
                    f"cannot read the login node's replies ({UNPARSEABLE_LIMIT} in a row): "
                    f"{text.splitlines()[0][:200] if text else f'exit code {res.rc}'!r}"
                )
            return PollReply(1, "unreadable reply", None, b"")
        self._unparseable = 0
        note = self.log.feed(reply.size, reply.data)
        if note:
            self.say(note)
        return reply

    def _controller_silent(self, line: str, since: float) -> None:
        """Warn by time, not by count: one failing squeue can take 10 s."""
        if self._failing_since is None:
            self._failing_since = since
        silent = time.monotonic() - self._failing_since
        warn_after = self.settings.controller_warn_after
        if silent >= warn_after and time.monotonic() - self._warned_at >= warn_after:
            self._warned_at = time.monotonic()
            why = line or f"no answer within {self.call_timeout} s"
            self.say(f"squeue has not answered for {silent:.0f} s: {why}")

    def _state_change(self, base: str, reason: str, node: str) -> None:
        reason = "" if reason == "None" else reason  # squeue's word for "no reason"
        if base == "RUNNING":
            self._started = True
            self.node = node or self.node
        elif self._started and base in REQUEUED:
            self._started = False
            self.requeues += 1
            cause = self._last[0] if self._last[0] not in ("RUNNING", "COMPLETING") else ""
            self.say(f"job {self.job_id} requeued ({cause or reason or 'requeue'})")
        if (base, reason) != self._last and base:
            where = f" on {node}" if base == "RUNNING" and node else ""
            why = f" ({reason})" if base == "PENDING" and reason else ""
            self.say(f"job {self.job_id}: {base}{why}{where}")
            self._last = (base, reason)

    def watch(self) -> None:
        watch_started = time.monotonic()
        interval = min(self.settings.poll_interval, 0.1)
        while True:
            polled_at = time.monotonic()
            reply = self.poll()
            if reply.rc != 0 and "Invalid job id" not in reply.line:
                # The controller did not answer (busy, restarting): keep the last state.
                self._controller_silent(reply.line if reply.rc != 124 else "", polled_at)
                time.sleep(interval)
                continue
            if self._failing_since is not None:
                silent = time.monotonic() - self._failing_since
                if silent >= self.settings.controller_warn_after:
                    self.say(f"squeue answers again after {silent:.0f} s")
                self._failing_since = None
            parts = (reply.line.split("|") + ["", ""])[:3] if reply.rc == 0 else ["", "", ""]
            state, reason, node = parts
            base = state.split(" ")[0]
            # No line: the controller forgot the job (past MinJobAge); sacct has the rest.
            if not base or base in TERMINAL:
                # sacct keeps no reason for a finished job; squeue's last word is the useful one.
                self.final_state = base
                self.final_reason = "" if reason in ("", "None") else reason
                self.detected_at = time.time()
                # The final state after the whole log, not amid it (``job N: FAILED`` was once
                # printed with 83,056 of 524,288 lines out).
                self.drain()
                self._state_change(base, reason, node)
                return
            self._state_change(base, reason, node)
            if self.log.more_waiting(reply.data):
                continue  # the job writes faster than we poll: read on at once
            interval = poll_interval(self.settings, time.monotonic() - watch_started)
            time.sleep(interval)

    def drain(self) -> None:
        """Read the log to its real end (Slurm may flush the last output after the state
        changed; a fast writer may be megabytes ahead of us)."""
        while self.log.more_waiting(self.poll(squeue=False).data):
            pass
        self.log.finish()


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc) if value else None
    except ValueError:
        return None


def fallback_record(
    job_id: str, squeue_state: str, node: str, times: dict[str, str], cpus: int, reason: str = ""
) -> JobRecord:
    """The job's end without sacct: squeue's last state and reason, and the exit code the job
    wrote."""
    rc_text = times.get("rc", "")
    rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
    state = squeue_state or ("COMPLETED" if rc == 0 else "FAILED" if rc is not None else "")
    start, end = _epoch(times.get("start")), _epoch(times.get("end"))
    elapsed = (end - start).total_seconds() if start and end else 0.0
    return JobRecord(
        job_id=job_id,
        state=state or "UNKNOWN",
        exit_code=rc if rc is not None and rc >= 0 else (0 if state == "COMPLETED" else 1),
        signal=0,
        reason=reason,
        node=node,
        partition="",
        submit=None,
        start=start,
        end=end,
        elapsed_s=elapsed,
        total_cpu_s=None,  # unknown without sacct: null in the record, as documented
        alloc_cpus=cpus,
        max_rss_bytes=None,
        time_limit_s=None,
        gpus=0,
        gpu_utilization=None,
    )


@dataclasses.dataclass
class Accounted:
    record: JobRecord
    times: dict[str, str]
    error: str | None = None  # set when the record is not sacct's


def account(
    transport: Transport,
    settings: SlurmSettings,
    layout: script.Layout,
    watcher: Watcher,
    say: Callable[[str], None],
) -> Accounted:
    """sacct's final record; without one after ``accounting_wait`` s, the squeue fallback."""
    job_id = watcher.job_id
    # Several tries fit in the wait: one hung sacct must not use it all up.
    call_timeout = max(1, min(script.SLURM_CALL_TIMEOUT, int(settings.accounting_wait / 2)))
    cmd = remote.render_accounting(job_id, layout, SACCT_FORMAT, call_timeout)
    started = time.monotonic()
    deadline = started + settings.accounting_wait
    said = False
    while True:
        res = transport.run(cmd)
        head, _, times_text = res.text.partition("@@TIMES@@\n")
        sacct, _, rc_text = head.partition("@@RC@@=")
        times = fields(times_text)
        record = parse_sacct(sacct, job_id)
        if is_final(record):
            assert record is not None
            # slurmdbd can hold a quick job's row before the job's start message fills in its
            # partition, time limit and ReqMem (seen under load): give it a moment, as the
            # efficiency advice reads them.
            if not record.partition and time.monotonic() < started + PARTIAL_ROW_GRACE_S:
                time.sleep(0.2)
                continue
            if not record.reason and watcher.final_reason:
                record = dataclasses.replace(record, reason=watcher.final_reason)
            return Accounted(record, times)
        error = res.error_line if rc_text.strip() not in ("", "0") else "no record yet"
        if rc_text.strip() == "124":
            error = f"sacct did not answer within {call_timeout} s"
        if record is not None and record.base_state not in TERMINAL and not watcher.final_state:
            time.sleep(0.2)  # squeue forgot it, sacct (lagging) says it runs: watch on
            return Accounted(record, times)
        now = time.monotonic()
        if NO_ACCOUNTING in error.lower() or now >= deadline:
            if watcher.final_state or "rc" in times:
                say(f"no accounting record for job {job_id} ({error}); using squeue's state")
                fb = fallback_record(
                    job_id,
                    watcher.final_state,
                    watcher.node,
                    times,
                    settings.job.cpus,
                    watcher.final_reason,
                )
                return Accounted(fb, times, error)
            raise UserError(f"no accounting record for job {job_id}: {error}")
        if not said and (rc_text.strip() not in ("", "0") or now - started > 1):
            said = True
            say(f"waiting up to {settings.accounting_wait:.0f} s for sacct ({error})")
        time.sleep(0.05 if now - started < 1 else 0.5)
