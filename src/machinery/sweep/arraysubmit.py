"""An array sweep's submission: find the array of this identity (reattach, or resubmit the
points whose task did not complete), else stage in once and submit ``--array=0-(N-1)%K``."""

from __future__ import annotations

import time
from pathlib import Path

from machinery.errors import UserError
from machinery.provenance import stage_env
from machinery.slurm import diskspace, envscript, remote, script
from machinery.slurm.accounting import TERMINAL
from machinery.slurm.polling import fields
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.staging import CachePlan, Snapshot, human
from machinery.sweep import arrayscript as ascript
from machinery.sweep import resubmit
from machinery.sweep.arraybase import KEY_PREFIX, ArrayBase
from machinery.sweep.arraystate import ArrayState, states_from_sacct
from machinery.sweep.copies import PARAMS_FILE


class Submitting(ArrayBase):
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

    def _survey(self) -> dict[int, str]:
        """Each point's latest task's state, over every array of this identity; returns the
        points to submit again, with their state: those not COMPLETED once every task has ended
        (as a single offload replaces a job that ended FAILED, PREEMPTED, ...), none while any
        still runs."""
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
            return {}
        return {i: states[i] for i in range(n) if states[i] != "COMPLETED"}

    def _resubmit(self, redo: dict[int, str]) -> None:
        assert self.layout is not None and self.job_id is not None
        old, n, k = self.job_id, len(self.request.points), self.request.max_parallel
        cmd = resubmit.render_resubmit(self.layout, old, sorted(redo), n, k, self._made())
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
        # Each point with its state, as a single offload says "ended PREEMPTED".
        names = ", ".join(f"{self.request.points[i].name}: {redo[i]}" for i in self.resubmitted)
        self.say(
            f"array {old} of this identity ended with {len(redo)} of {n} point(s) not "
            f"completed ({names}); submitted array {self.job_id} over them "
            f"(--array={resubmit.spec(self.resubmitted)}%{k}, identity {self.key})"
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
        diskspace.check_stage_in(res.rc, res.text, layout.runs, self.settings.min_free_mb)
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
