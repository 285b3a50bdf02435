"""Transport ``none``: run the stage here; figures to the log, a deterministic record to DVC."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# usable_cpus and maxrss_bytes live with the stage measurements; importable from here too.
from machinery.efficiency.measure import maxrss_bytes as maxrss_bytes
from machinery.efficiency.measure import measurement, run_child
from machinery.efficiency.measure import usable_cpus as usable_cpus
from machinery.errors import UserError
from machinery.slurm.accounting import SlurmReport, cpu_efficiency


class CommandFailed(UserError):
    exit_code = 1


def run_here(
    stage: str, cmd: list[str], root: Path, identity: str, env: dict[str, str] | None = None
) -> SlurmReport:
    """Run ``cmd`` in ``root`` (with ``env`` added to this environment).

    Wall time, CPU time and max RSS come from the child's rusage and go to the log, not into the
    record: the record is a DVC output, and a fresh clone's ``make run`` must reproduce the
    committed ``dvc.lock``, so it holds only what the same inputs always give. A cluster job's
    record holds its accounting: that is what the report's compute table is for."""
    cpus = usable_cpus()
    code, usage, wall = run_child(cmd, root, {**os.environ, **(env or {})})
    cpu = usage.ru_utime + usage.ru_stime
    efficiency = cpu_efficiency(cpu, wall, cpus)
    state = "COMPLETED" if code == 0 else ("CANCELLED" if code < 0 else "FAILED")
    print(
        f"[offload] {stage} ran here (transport none): {state}, wall {wall:.1f} s, CPU {cpu:.1f} s"
        f" on {cpus} CPUs"
        + (f" ({100 * efficiency:.1f} %)" if efficiency is not None else "")
        + f", max RSS {maxrss_bytes(usage.ru_maxrss) / 2**20:.1f} MiB",
        file=sys.stderr,
        flush=True,
    )
    report = SlurmReport(
        stage=stage,
        transport="none",
        source="none",
        identity=identity,
        job_id=None,
        reattached=False,
        node=None,
        partition=None,
        state=state,
        reason=None,
        exit_code=max(code, 0),
        signal=-code if code < 0 else 0,
        submit_time=None,
        start_time=None,
        end_time=None,
        queue_wait_s=None,
        run_time_s=None,
        time_limit_s=None,
        alloc_cpus=None,
        total_cpu_s=None,
        cpu_efficiency=None,
        max_rss_bytes=None,
        gpus=0,
        gpu_utilization=None,
        stage_efficiency=None,
        short_job=False,
        timings_s={},
        note="ran here, not on a cluster: its run time, CPU and memory are in the stage's log",
    )
    report.write(root)
    # The figures for the efficiency table, outside DVC's outputs (machinery.efficiency.measure).
    measurement(stage, wall, usage, code).write(root)
    if code != 0:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise CommandFailed(f"stage {stage}: {' '.join(cmd)} failed ({how})")
    return report
