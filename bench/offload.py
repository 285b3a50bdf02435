"""Offload overhead: our own steps per offloaded stage, and the CLI's start-up.

    make bench-offload          (root: starts a local Slurm + sshd, stops it afterwards)

Builds a small throwaway project (1 MB dep, a ~1 s CPU-bound stage writing a 1 MB out: not the
example, so a fork's bench measures the same thing) and offloads it over SSH to the local
cluster: once cold (a fresh workdir) and several times warm (new identities). Prints each
phase: our steps (connect, stage-in, detection, stage-out, accounting) against the 1 s target,
Slurm's queue wait and the job's run apart. Also times ``mlops --help`` and ``mlops offload``
with transport none against a bare ``python -c pass`` (target: 0.3 s), with bytecode written
(the first run compiles it; ``PYTHONDONTWRITEBYTECODE`` would make every start compile).
Writes bench/results/offload.json. The machine may be shared: the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MLOPS = str(Path(sys.executable).parent / "mlops")
STAGE = "work"
CMD = [
    "python3",
    "-c",
    "import os, time\nt = time.time()\nwhile time.time() - t < 1: pass\n"
    "os.makedirs('out', exist_ok=True)\nopen('out/result.bin', 'wb').write(os.urandom(1 << 20))",
]
STEPS = ["connect", "stage_in", "detect", "stage_out", "accounting"]
APART = ["environment", "queue_wait", "run"]
STEPS_TARGET_S = 1.0
STARTUP_TARGET_S = 0.3


def make_project(path: Path) -> None:
    (path / "data").mkdir(parents=True)
    (path / "data/input.bin").write_bytes(os.urandom(1 << 20))
    (path / "params.yaml").write_text(yaml.safe_dump({STAGE: {"n": 1}}))
    stage = {
        "cmd": " ".join(["mlops", "offload", STAGE, "--", *CMD]),
        "deps": ["data/input.bin", "nonce.txt"],
        "params": [STAGE],
        "outs": ["out", f"reports/slurm/{STAGE}.json"],
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {STAGE: stage}}))
    settings = {"env": {"kind": "none"}, "job": {"cpus": 1, "time": "00:10:00"}}
    (path / "slurm.yaml").write_text(yaml.safe_dump(settings))
    (path / ".gitignore").write_text("/data/\n/out/\n/reports/\n")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return {**env, **extra}


def run_offload(ws: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    # A fresh dep makes a new job identity (a retry would reattach).
    (ws / "nonce.txt").write_text(secrets.token_hex(8))
    started = time.monotonic()
    proc = subprocess.run(
        [MLOPS, "offload", STAGE, "--", *CMD], cwd=ws, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"offload failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads((ws / f"reports/slurm/{STAGE}.json").read_text())


def timed(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)  # writes bytecode
    walls = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


def startup(ws: Path, runs: int) -> dict[str, float]:
    env = base_env({"MLOPS_SLURM_TRANSPORT": "none"})
    (ws / "nonce.txt").write_text("startup")
    return {
        "python -c pass": timed([sys.executable, "-c", "pass"], ws, env, runs),
        "mlops --help": timed([MLOPS, "--help"], ws, env, runs),
        "mlops offload (none, true)": timed([MLOPS, "offload", STAGE, "--", "true"], ws, env, runs),
    }


def main() -> None:
    sys.path[:0] = [str(REPO / "src")]
    from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm offloaded runs")
    parser.add_argument("--startup-runs", type=int, default=5, help="timed CLI starts")
    parser.add_argument("--cluster-dir", type=Path, help="reuse a running `make cluster-up`")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    tmp.chmod(0o755)  # the cluster's login user must reach the munge socket below it
    cluster: LocalCluster | None = None
    info: ClusterInfo | None = None
    workdir = ""
    try:
        ws = tmp / "ws"
        make_project(ws)
        start = startup(ws, args.startup_runs)
        if args.cluster_dir:
            info = ClusterInfo.load(args.cluster_dir)
        else:
            cluster = LocalCluster(tmp / "cluster")
            info = cluster.up()
        workdir = f".mlops-bench-{secrets.token_hex(3)}"  # a fresh one: the first run is cold
        remote_env = base_env({**info.env(), "MLOPS_SLURM_WORKDIR": f"~/{workdir}"})
        cold = run_offload(ws, remote_env)
        warm = [run_offload(ws, remote_env) for _ in range(args.warm)]
    finally:
        if cluster is not None:
            cluster.down()
        if info is not None and workdir:
            shutil.rmtree(Path(pwd.getpwnam(info.user).pw_dir) / workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def row(wall: float, report: dict[str, Any]) -> dict[str, float]:
        t = report["timings_s"]
        out = {p: float(t.get(p, 0.0)) for p in STEPS + APART}
        out["steps"] = sum(out[p] for p in STEPS)
        out["wall"] = wall
        # What is left: the client's start-up, hashing, waits between polls, rounding.
        out["other"] = wall - out["steps"] - sum(out[p] for p in APART)
        return out

    cold_row = row(*cold)
    warm_rows = [row(w, r) for w, r in warm]
    warm_median = {k: statistics.median(r[k] for r in warm_rows) for k in warm_rows[0]}
    results = {
        "startup_s": start,
        "cold": cold_row,
        "warm_median": warm_median,
        "warm_runs": warm_rows,
        "steps_target_s": STEPS_TARGET_S,
        "startup_target_s": STARTUP_TARGET_S,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "offload.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"start-up (median of {args.startup_runs}, bytecode written; seconds)")
    for name, value in start.items():
        print(f"  {name:28}{value:7.3f}")
    print(f"offloaded stage{'':1}{'cold':>9}{'warm':>9}   (warm = median of {args.warm}; seconds)")
    for phase in STEPS:
        print(f"  {phase:14}{cold_row[phase]:9.3f}{warm_median[phase]:9.3f}")
    print(f"  {'= our steps':14}{cold_row['steps']:9.3f}{warm_median['steps']:9.3f}")
    for phase in APART:
        print(f"  {phase:14}{cold_row[phase]:9.3f}{warm_median[phase]:9.3f}   (Slurm / the job)")
    print(f"  {'other':14}{cold_row['other']:9.3f}{warm_median['other']:9.3f}")
    print(f"  {'wall':14}{cold_row['wall']:9.3f}{warm_median['wall']:9.3f}")
    steps = warm_median["steps"]
    verdict = "meets" if steps < STEPS_TARGET_S else "MISSES"
    print(
        f"warm: our steps {steps:.2f} s {verdict} the {STEPS_TARGET_S:.0f} s target; "
        f"queue wait {warm_median['queue_wait']:.2f} s apart"
    )
    for name in ("mlops --help", "mlops offload (none, true)"):
        ok = "meets" if start[name] <= STARTUP_TARGET_S else "MISSES"
        print(f"{name}: {start[name]:.2f} s {ok} the {STARTUP_TARGET_S} s target")


if __name__ == "__main__":
    main()
