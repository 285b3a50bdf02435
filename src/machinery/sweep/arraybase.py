"""What every part of an array sweep shares: the request, the cluster connection and layout,
the array's identity, and the queries of the tasks' states (squeue) and records (sacct).

The parts are mixins over this base, one module each: submission (``arraysubmit``), watching
(``arraywatch``), stage-out and import (``arrayout``); ``array.ArraySweep`` runs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import sys
from concurrent.futures import Future
from pathlib import Path

import yaml

from machinery.errors import UserError
from machinery.files import sha256_file
from machinery.slurm import script
from machinery.slurm.accounting import SACCT_FORMAT, TERMINAL, JobRecord
from machinery.slurm.connect import make_transport
from machinery.slurm.polling import NO_ACCOUNTING, fallback_record, fields
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.stage import REPORT_DIR, code_files, expand
from machinery.slurm.transport import Transport
from machinery.sweep import arrayscript as ascript
from machinery.sweep.arraystate import ArrayState, parse_array_sacct
from machinery.sweep.copies import PARAMS_FILE
from machinery.sweep.importer import Imported, Importer
from machinery.sweep.record import PointResult, SweepRecord, load_record

KEY_PREFIX = "sweep-"


class ArrayBase:
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
        # sacct's rows as the watcher's latest round read them (None: that round read none).
        self.fresh_records: dict[int, JobRecord] | None = None
        self.kept: dict[int, PointResult] = {}
        # After a resubmission: point index → the array whose task for it counts, the states
        # of the points an earlier array finished, and the run dir's array history.
        self.owner: dict[int, str] = {}
        self.earlier: dict[int, str] = {}
        self.history = ""
        self.resubmitted: list[int] = []
        # sacct's words on a cluster without accounting storage: the tasks' records are then
        # squeue's states and the exit codes the tasks wrote, as a single offload's are.
        self.no_accounting = ""
        self.live: ArrayState | None = None  # the watcher's squeue picture

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

    def _owner(self, index: int) -> str:
        return self.owner.get(index, self.job_id or "")

    def _made(self) -> list[str]:
        """The outs a task makes (the Slurm record is written here, from sacct)."""
        outs = [o for s in self.request.stages for o in s.stage.outs]
        return [o for o in outs if not Path(o).is_relative_to(REPORT_DIR)]

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
        if NO_ACCOUNTING in res.err.decode(errors="replace").lower() and not self.no_accounting:
            self.no_accounting = res.error_line
            self.say(f"no accounting ({self.no_accounting}); using squeue's states")
        return res.text.split("@@RC@@=")[0]

    def _records(self) -> dict[int, JobRecord]:
        """sacct's record of each point's latest task (from an earlier array after a
        resubmission)."""
        out: dict[int, JobRecord] = {}
        for job in sorted(set(self.owner.values()) | {self.job_id or ""}):
            recs = parse_array_sacct(self._sacct(job), job)
            if self.no_accounting:
                return self._squeue_records()
            out.update({i: r for i, r in recs.items() if self._owner(i) == job})
        return out

    def _squeue_records(self) -> dict[int, JobRecord]:
        """Without accounting: each ended task's squeue state and reason, and the exit code and
        times its script wrote (``.mlops-times`` in its point's dir)."""
        assert self.layout is not None
        state = self.live
        if state is None:
            return {}
        ended = sorted(i for i, s in state.states.items() if s in TERMINAL)
        res = self.transport.run(ascript.render_times(self.layout, ended), timeout=60)
        times: dict[int, str] = {}
        current = -1
        for line in res.text.splitlines():
            if line.startswith("@@TIMES@@ "):
                current = int(line.split()[1])
                times[current] = ""
            elif current >= 0:
                times[current] += line + "\n"
        out: dict[int, JobRecord] = {}
        for i in ended:
            rec = fallback_record(
                f"{self._owner(i)}_{i}",
                state.states[i],
                "",
                fields(times.get(i, "")),
                self.settings.job.cpus,
                state.reasons.get(i, ""),
            )
            out[i] = dataclasses.replace(rec, batch_done=True)  # as final as it gets
        return out
