"""Offload overhead of the train stage: offloaded wall time minus local wall time.

    make bench-offload          (root: starts a local Slurm + sshd, stops it afterwards)

Runs the train stage's command from ``dvc.yaml`` (whatever example the repository holds) through
``mlops offload train`` in a throwaway copy of the repo, first
with transport none (here), then over SSH to the local cluster: once cold (the cluster-side venv
is built) and several times warm. Prints the overhead broken into connect, stage-in, environment,
queue wait, run, detection, stage-out and accounting, and writes bench/results/offload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster  # noqa: E402
from tests.support.workspace import Workspace  # noqa: E402

MLOPS = str(Path(sys.executable).parent / "mlops")
DVC = str(Path(sys.executable).parent / "dvc")
PHASES = [
    "connect",
    "stage_in",
    "environment",
    "queue_wait",
    "run",
    "detect",
    "stage_out",
    "accounting",
]
TARGET_S = 2.0


def env_for(ws: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    env["PYTHONPATH"] = f"{ws / 'src'}:{ws}"
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return {**env, **extra}


def train_command(ws: Path) -> list[str]:
    """What ``mlops offload train --`` runs, as dvc.yaml says."""
    import yaml

    argv = shlex.split(yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]["train"]["cmd"])
    return argv[argv.index("--") + 1 :] if "--" in argv else argv


def run_train(ws: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    # A fresh file in the workspace makes a new job identity (a retry would reattach).
    (ws / "bench-nonce.txt").write_text(secrets.token_hex(8))
    started = time.monotonic()
    proc = subprocess.run(
        [MLOPS, "offload", "train", "--", *train_command(ws)],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"offload failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads((ws / "reports/slurm/train.json").read_text())
    return wall, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm offloaded runs")
    parser.add_argument("--local", type=int, default=3, help="local runs")
    parser.add_argument("--cluster-dir", type=Path, help="reuse a running `make cluster-up`")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    tmp.chmod(0o755)  # the cluster's login user must reach the munge socket below it
    cluster: LocalCluster | None = None
    info: ClusterInfo | None = None
    workdir = ""
    try:
        if args.cluster_dir:
            info = ClusterInfo.load(args.cluster_dir)
        else:
            cluster = LocalCluster(tmp / "cluster")
            info = cluster.up()
        ws = Workspace.clone(tmp / "ws").path
        local_env = env_for(ws, {"MLOPS_SLURM_TRANSPORT": "none"})
        # The stages before train, and a first local train that warms the page cache and the
        # imports' bytecode.
        subprocess.run([DVC, "repro", "train"], cwd=ws, env=local_env, check=True)
        local = [run_train(ws, local_env) for _ in range(args.local)]
        local_wall = statistics.median(w for w, _ in local)
        local_run = statistics.median(r["run_time_s"] for _, r in local)

        workdir = f".mlops-bench-{secrets.token_hex(3)}"  # a fresh one: the first run is cold
        remote_env = env_for(ws, {**info.env(), "MLOPS_SLURM_WORKDIR": f"~/{workdir}"})
        cold = run_train(ws, remote_env)
        warm = [run_train(ws, remote_env) for _ in range(args.warm)]
    finally:
        if cluster is not None:
            cluster.down()
        if info is not None and workdir:
            shutil.rmtree(Path(pwd.getpwnam(info.user).pw_dir) / workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def row(name: str, wall: float, report: dict[str, Any]) -> dict[str, float]:
        t = report["timings_s"]
        out = {p: float(t.get(p, 0.0)) for p in PHASES}
        out["wall"] = wall
        out["overhead"] = wall - local_wall
        # The job itself on the node (login shell, venv) against the same command run here.
        out["run_vs_local"] = out["run"] - local_run
        steps = sum(out[p] for p in PHASES if p != "run")
        out["steps"] = steps
        # What is left: client start-up and hashing differences, reconnect waits, rounding.
        out["other"] = out["overhead"] - steps - out["run_vs_local"]
        out["sacct_elapsed"] = report["run_time_s"]
        return out

    cold_row = row("cold", *cold)
    warm_rows = [row("warm", w, r) for w, r in warm]
    warm_median = {k: statistics.median(r[k] for r in warm_rows) for k in warm_rows[0]}
    results = {
        "local": {"wall": local_wall, "run": local_run},
        "cold": cold_row,
        "warm_median": warm_median,
        "warm_runs": warm_rows,
        "target_s": TARGET_S,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "offload.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"train stage: local wall {local_wall:.2f} s (median of {args.local})")
    print(f"{'':14}{'cold':>9}{'warm':>9}   (warm = median of {args.warm}; seconds)")
    for phase in PHASES:
        print(f"  {phase:12}{cold_row[phase]:9.3f}{warm_median[phase]:9.3f}")
    print(f"  {'= steps':12}{cold_row['steps']:9.3f}{warm_median['steps']:9.3f}   (all but run)")
    print(f"  {'run - local':12}{cold_row['run_vs_local']:9.3f}{warm_median['run_vs_local']:9.3f}")
    print(f"  {'other':12}{cold_row['other']:9.3f}{warm_median['other']:9.3f}")
    print(f"  {'= overhead':12}{cold_row['overhead']:9.3f}{warm_median['overhead']:9.3f}")
    print(
        f"  {'wall':12}{cold_row['wall']:9.3f}{warm_median['wall']:9.3f}   (local {local_wall:.3f})"
    )
    verdict = "meets" if warm_median["overhead"] <= TARGET_S else "MISSES"
    print(
        f"warm overhead {warm_median['overhead']:.2f} s ({warm_median['steps']:.2f} s of offload "
        f"steps) {verdict} the {TARGET_S:.0f} s target; cold adds {cold_row['overhead']:.1f} s"
    )


if __name__ == "__main__":
    main()
