"""Transport ``none``: the points run on this machine, at most K at a time, each in its own
copy of the workspace (``dvc repro`` there, then ``dvc exp save``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.sweep.copies import DVC, Copy, read_metrics, tool_env
from machinery.sweep.grid import Point
from machinery.sweep.record import PointResult

TAIL_LINES = 20


def run_here(
    root: Path,
    points: list[Point],
    base: dict[str, Any],
    stages: list[str],
    metrics: list[str],
    files: list[str],
    extra: list[str],
    cache: str,
    max_parallel: int,
) -> tuple[list[PointResult], float]:
    started = time.monotonic()
    env = {**tool_env(), "MLOPS_SLURM_TRANSPORT": "none"}

    def one(point: Point) -> PointResult:
        with tempfile.TemporaryDirectory(prefix="mlops-sweep-") as parent:
            copy = Copy.make(root, files, extra, point.params(base), cache, Path(parent))
            t0 = time.monotonic()
            proc = subprocess.run(
                [DVC, "repro", *stages],
                cwd=copy.path,
                env=env,
                capture_output=True,
                text=True,
            )
            elapsed = time.monotonic() - t0
            result = PointResult(point.index, point.name, point.values, "COMPLETED")
            result.elapsed_s = round(elapsed, 3)
            if proc.returncode != 0:
                result.state, result.exit_code = "FAILED", proc.returncode
                lines = (proc.stdout + proc.stderr).strip().splitlines()
                result.reason = next(
                    (ln for ln in reversed(lines) if ln.startswith("ERROR")), "dvc repro failed"
                )
                result.log_tail = lines[-TAIL_LINES:]
            else:
                result.metrics = read_metrics(copy.path, metrics)
                try:
                    result.experiment = copy.save(point.name)
                except UserError as exc:
                    result.state, result.reason = "FAILED", str(exc)
            say(f"point {point.index} {point.name}: {result.state}")
            return result

    with ThreadPoolExecutor(max_workers=max_parallel) as pool:
        results = list(pool.map(one, points))
    return results, time.monotonic() - started


def say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)
