"""A throwaway DVC project with the sweep fixture's stages: train (through ``mlops offload``,
as the template's own train stage) and evaluate (metrics)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.workspace import GIT_IDENTITY

HERE = Path(__file__).resolve().parent
MLOPS = str(Path(sys.executable).parent / "mlops")
VENV_BIN = str(Path(sys.executable).parent)


def fixture_dvc_yaml(token: str = "") -> dict[str, Any]:
    # The token keeps each test's array identity apart (one cluster per session).
    train = f"python3 -m sweepfix train{' ' + token if token else ''}"
    return {
        "stages": {
            "train": {
                "cmd": f"mlops offload train -- {train}",
                "deps": ["data/points.csv", "sweepfix.py"],
                "params": ["train"],
                "outs": ["models/model.json", "reports/slurm/train.json"],
            },
            "evaluate": {
                "cmd": "python3 -m sweepfix evaluate",
                "deps": ["data/points.csv", "models/model.json", "sweepfix.py"],
                "metrics": ["eval/metrics.json"],
            },
        }
    }


PARAMS: dict[str, Any] = {
    "train": {"estimator": "ridge", "ridge": {"alpha": 1.0}, "knn": {"k": 3}},
    "report": {"headline": "", "directions": {}},
}


def points_csv() -> str:
    lines = ["x,y"]
    for i in range(40):
        x = i / 4
        noise = ((i * 7919) % 13 - 6) / 10  # fixed, no RNG: the same bytes everywhere
        lines.append(f"{x},{2 * x + 1 + noise + (0.3 * x * x if i % 3 == 0 else 0)}")
    return "\n".join(lines) + "\n"


@dataclass
class SweepProject:
    path: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
        env["PATH"] = os.pathsep.join([VENV_BIN, env.get("PATH", "")])
        env.update(GIT_IDENTITY)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.path,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def must(self, *args: str, env: dict[str, str] | None = None) -> str:
        proc = self.run(*args, env=env)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def sweep(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.run(MLOPS, "sweep", *args, env=env, timeout=timeout)

    def popen(self, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MLOPS, "sweep", *args],
            cwd=self.path,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def exp_show(self) -> list[dict[str, Any]]:
        """``dvc exp show --json``'s experiments of HEAD, as name → params/metrics."""
        import json

        data = json.loads(self.must("dvc", "exp", "show", "--json"))
        out = []
        for row in data:
            for exp in row.get("experiments") or []:
                for rev in exp.get("revs") or []:
                    d = rev.get("data") or {}
                    out.append(
                        {
                            "name": rev.get("name") or exp.get("name"),
                            "params": d.get("params", {}).get("params.yaml", {}).get("data", {}),
                            "metrics": d.get("metrics", {})
                            .get("eval/metrics.json", {})
                            .get("data", {}),
                        }
                    )
        return out


def make_sweep_project(
    path: Path,
    token: str = "",
    slurm: dict[str, Any] | None = None,
    sleep: float = 0.0,
    train: dict[str, Any] | None = None,
) -> SweepProject:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "fixture_stage.py", path / "sweepfix.py")
    (path / "data").mkdir(exist_ok=True)
    (path / "data/points.csv").write_text(points_csv())
    params = {**PARAMS, "train": {**PARAMS["train"], "sleep": sleep, **(train or {})}}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (path / "dvc.yaml").write_text(yaml.safe_dump(fixture_dvc_yaml(token), sort_keys=False))
    settings = slurm or {"env": {"kind": "none"}, "job": {"cpus": 1, "time": "00:10:00"}}
    (path / "slurm.yaml").write_text(yaml.safe_dump(settings))
    project = SweepProject(path)
    project.must("git", "init", "-q", "-b", "main")
    project.must("dvc", "init", "-q")
    project.must("git", "add", "-A")
    project.must("git", "commit", "-q", "-m", "fixture project")
    return project
