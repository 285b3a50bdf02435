"""Metrics and params against a baseline revision, from DVC's own ``diff`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machinery.errors import UserError

# The dvc of this venv, also when its bin/ is not on PATH (`.venv/bin/mlops comment` from a
# plain shell printed a FileNotFoundError traceback).
_VENV_DVC = Path(sys.executable).parent / "dvc"
DVC = str(_VENV_DVC) if _VENV_DVC.is_file() else "dvc"


@dataclass(frozen=True)
class DiffRow:
    path: str
    key: str
    old: Any
    new: Any
    change: Any

    @property
    def changed(self) -> bool:
        return bool(self.old != self.new)


def _dvc_diff(kind: str, baseline: str) -> dict[str, dict[str, dict[str, Any]]]:
    # --all: unchanged entries too, so the verdict line and the tables read one diff (without it
    # an unchanged headline metric looked "new: not in main" while the table said nothing differs).
    cmd = [DVC, kind, "diff", baseline, "--json", "--all"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("dvc is not installed here (not on PATH): run `make setup`") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc {kind} diff against '{baseline}' failed: {last}")
    return json.loads(proc.stdout or "{}") or {}


def _rows(data: dict[str, dict[str, dict[str, Any]]]) -> list[DiffRow]:
    return [
        DiffRow(path, key, values.get("old"), values.get("new"), values.get("diff"))
        for path, entries in sorted(data.items())
        for key, values in sorted(entries.items())
    ]


def metrics_diff(baseline: str) -> list[DiffRow]:
    return _rows(_dvc_diff("metrics", baseline))


def params_diff(baseline: str) -> list[DiffRow]:
    return _rows(_dvc_diff("params", baseline))


def against(baseline: str) -> tuple[list[DiffRow], list[DiffRow]]:
    """(metrics rows, params rows) against ``baseline``, unchanged ones included (``changed``
    tells them apart); UserError with DVC's last line.

    The two ``dvc`` runs go side by side: each is mostly interpreter start-up (~1.5 s here).
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        metrics = pool.submit(metrics_diff, baseline)
        params = pool.submit(params_diff, baseline)
        return metrics.result(), params.result()
