"""Metrics and params against a baseline revision, from DVC's own ``diff`` commands."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from machinery.errors import UserError


@dataclass(frozen=True)
class DiffRow:
    path: str
    key: str
    old: Any
    new: Any
    change: Any


def _dvc_diff(kind: str, baseline: str) -> dict[str, dict[str, dict[str, Any]]]:
    cmd = ["dvc", kind, "diff", baseline, "--json"]
    if kind == "params":
        cmd.append("--all")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc {kind} diff against '{baseline}' failed: {last}")
    return json.loads(proc.stdout or "{}") or {}


def _rows(data: dict[str, dict[str, dict[str, Any]]], changed_only: bool) -> list[DiffRow]:
    rows = []
    for path, entries in sorted(data.items()):
        for key, values in sorted(entries.items()):
            old, new = values.get("old"), values.get("new")
            if changed_only and old == new:
                continue
            rows.append(DiffRow(path, key, old, new, values.get("diff")))
    return rows


def metrics_diff(baseline: str) -> list[DiffRow]:
    return _rows(_dvc_diff("metrics", baseline), changed_only=False)


def params_diff(baseline: str) -> list[DiffRow]:
    return _rows(_dvc_diff("params", baseline), changed_only=True)


def against(baseline: str) -> tuple[list[DiffRow], list[DiffRow]]:
    """(metrics rows, changed params rows) against ``baseline``; UserError with DVC's last line.

    The two ``dvc`` runs go side by side: each is mostly interpreter start-up (~1.5 s here).
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        metrics = pool.submit(metrics_diff, baseline)
        params = pool.submit(params_diff, baseline)
        return metrics.result(), params.result()
