"""Transport ``none``: the points run on this machine, at most K at a time, each in its own
copy of the workspace (its stages' commands there, then ``dvc exp save``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.provenance import stage_env
from machinery.sweep.copies import Copy, read_metrics, tool_env
from machinery.sweep.grid import Point
from machinery.sweep.record import PointResult

TAIL_LINES = 20


def run_here(
    root: Path,
    points: list[Point],
    base: dict[str, Any],
    commands: list[tuple[str, str]],
    metrics: list[str],
    files: list[str],
    extra: list[str],
    cache: str,
    max_parallel: int,
) -> tuple[list[PointResult], float]:
    """Each point: a copy, the stages' own commands in it (in ``dvc.yaml`` order, as DVC would
    run them; an ``mlops offload`` there runs here, transport none), then ``dvc exp save``."""
    started = time.monotonic()
    env = {**tool_env(), "MLOPS_SLURM_TRANSPORT": "none"}
    # The provenance of the workspace, as an array task gets it: a point's params differ from
    # HEAD's by design, which is not a dirty code commit.
    env.update(stage_env(commands[0][0], root))

    def one(point: Point) -> PointResult:
        with tempfile.TemporaryDirectory(prefix="mlops-sweep-") as parent:
            copy = Copy.make(root, files, extra, point.params(base), cache, Path(parent))
            run_env = {**env, "PYTHONPATH": f"{copy.path / 'src'}:{copy.path}"}
            t0 = time.monotonic()
            result = PointResult(point.index, point.name, point.values, "COMPLETED")
            log: list[str] = []
            for name, cmd in commands:
                log.append(f"[sweep] stage {name}: {cmd}")
                proc = subprocess.run(
                    ["bash", "-c", cmd],
                    cwd=copy.path,
                    env=run_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                log += proc.stdout.splitlines()
                if proc.returncode != 0:
                    result.state, result.exit_code = "FAILED", proc.returncode
                    result.reason = f"stage {name}: exit code {proc.returncode}"
                    result.log_tail = log[-TAIL_LINES:]
                    break
            result.elapsed_s = round(time.monotonic() - t0, 3)
            if result.state == "COMPLETED":
                result.metrics = read_metrics(copy.path, metrics)
                try:
                    result.experiment = copy.save(point.name, [n for n, _ in commands])
                except UserError as exc:
                    result.state, result.reason = "FAILED", str(exc)
            say(f"point {point.index} {point.name}: {result.state}")
            return result

    with ThreadPoolExecutor(max_workers=max_parallel) as pool:
        results = list(pool.map(one, points))
    return results, time.monotonic() - started


def say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)
