"""A 6-point sweep as ONE Slurm job array vs six sequential offloads vs six local runs.

    make bench-sweep            (root: starts a local Slurm + sshd, stops it afterwards)

The sweep tests' fixture project (tests/sweep/project.py: not the example), its train stage
made to take SLEEP seconds per point. The points wait rather than compute on purpose: this VM
has 2 cores while the local cluster's node declares K = 6 CPUs (1 CPU a task, --max-parallel
6), so K tasks run at once on the node; a CPU-bound point would measure the 2 cores, not the
array. Three ways, timed end to end:

- ``array``: ``mlops sweep train -S … --max-parallel 6`` over SSH: one stage-in, one sbatch
  --array=0-5%6, one watcher, one stage-out, six DVC experiments;
- ``offloads``: six ``mlops offload train -- …`` runs one after another (a params.yaml per
  point), each its own stage-in, job, watch and stage-out (no experiments);
- ``local``: the six points' stage commands run here one after another (no DVC, no Slurm).

Prints the ratios and the array's own breakdown: Slurm's part (queue wait of the first task,
submit to the last task's end) apart from ours (stage-in, watch overhead, stage-out, import as
DVC experiments: only the part after the last task ended, as points are imported while the
others still run). Slurm's part is also read to the millisecond from slurmctld.log
(bench/ctldlog.py): when the array's tasks started (one scheduler pass or not), how long they
ran, and the single jobs' queue waits next to them. Target: the array ≥ 0.8·K× faster than
the six offloads. Writes bench/results/sweep.json. The machine may be shared: the figures are
noisy, so the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MLOPS = str(Path(sys.executable).parent / "mlops")
K = 6
SLEEP = 8.0
ALPHAS = [0, 0.5, 1, 2, 5, 10]


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return {**env, **extra}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{proc.stderr[-3000:]}")
    return wall


def set_alpha(path: Path, alpha: float) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["train"]["ridge"]["alpha"] = alpha
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster
    from tests.sweep.fixture_stage import __file__ as _stage  # noqa: F401 - the fixture exists
    from bench import ctldlog
    from tests.sweep.project import make_sweep_project

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, help="reuse a running `make cluster-up`")
    parser.add_argument(
        "--batch-sched-delay",
        type=int,
        help="SchedulerParameters=batch_sched_delay for the bench's own cluster (the local"
        " cluster sets 0; Slurm's default is 3), to measure the array under Slurm's default",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-sweep-", dir="/tmp"))
    tmp.chmod(0o755)  # the cluster's login user must reach the munge socket below it
    cluster: LocalCluster | None = None
    info: ClusterInfo | None = None
    workdir = f".mlops-bench-sweep-{secrets.token_hex(3)}"
    results: dict[str, Any] = {"k": K, "points": len(ALPHAS), "sleep_s": SLEEP}
    results["load_before"] = os.getloadavg()
    try:
        if args.cluster_dir:
            info = ClusterInfo.load(args.cluster_dir)
        else:
            extra = []
            if args.batch_sched_delay is not None:
                # The last SchedulerParameters line of slurm.conf wins.
                extra = [f"SchedulerParameters=batch_sched_delay={args.batch_sched_delay}"]
                results["batch_sched_delay"] = args.batch_sched_delay
            cluster = LocalCluster(tmp / "cluster", cpus=K, extra_conf=extra)
            info = cluster.up()
            # A fresh slurmctld's first scheduling pass comes about 3 s after it started
            # (slurmctld.log); a real cluster has long been up. One throwaway job first, so
            # that the array is not the job that waits for it.
            subprocess.run(
                ["sbatch", "--wait", "--quiet", "-o", "/dev/null", "--wrap", "true"],
                env={**os.environ, "SLURM_CONF": info.slurm_conf},
                cwd=tmp,
                check=True,
            )
        remote = env_with({**info.env(), "MLOPS_SLURM_WORKDIR": f"~/{workdir}"})
        token = secrets.token_hex(4)

        def project(name: str) -> Path:
            p = make_sweep_project(tmp / name, token).path
            params = yaml.safe_load((p / "params.yaml").read_text())
            params["train"]["sleep"] = SLEEP
            (p / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            subprocess.run(["git", "commit", "-qam", "slow"], cwd=p, check=True, env=remote)
            return p

        # The array.
        ws = project("array")
        grid = ["-S", "train.ridge.alpha=" + ",".join(map(str, ALPHAS))]
        wall = timed([MLOPS, "sweep", "train", *grid, "--max-parallel", str(K)], ws, remote)
        record = json.loads((ws / "reports/sweep.json").read_text())
        t = record["timings_s"]
        ours = {k: t.get(k, 0.0) for k in ("stage_in", "stage_out", "import", "accounting")}
        results["array"] = {
            "wall_s": wall,
            "slurm_s": record["wall_s"],  # submit to the last task's end (sacct)
            "first_queue_wait_s": t.get("queue_wait_first"),
            "watch_s": t.get("watch"),
            "ours_s": ours,
            "efficiency": record["efficiency"],
        }
        # Six sequential offloads of the same points.
        ws = project("offloads")
        cmd = ["python3", "-m", "sweepfix", "train", token]
        walls = []
        for alpha in ALPHAS:
            set_alpha(ws, alpha)
            walls.append(timed([MLOPS, "offload", "train", "--", *cmd], ws, remote))
        results["offloads"] = {"wall_s": sum(walls), "each_s": walls}
        # Six local sequential runs of the stage commands.
        ws = project("local")
        walls = []
        for alpha in ALPHAS:
            set_alpha(ws, alpha)
            walls.append(timed(["python3", "-m", "sweepfix", "train"], ws, remote))
            walls[-1] += timed(["python3", "-m", "sweepfix", "evaluate"], ws, remote)
        results["local"] = {"wall_s": sum(walls), "each_s": walls}
        log = Path(info.state_dir) / "log/slurmctld.log"
        conf = Path(info.slurm_conf).read_text().splitlines()
        sched = [ln for ln in conf if ln.startswith("SchedulerParameters=")]
        results["scheduler_parameters"] = sched[-1].split("=", 1)[1] if sched else ""
        results["slurmctld"] = ctldlog.summary(ctldlog.read(log), str(record["job_id"]))
        results["load_after"] = os.getloadavg()
    finally:
        if cluster is not None:
            cluster.down()
        if info is not None:
            shutil.rmtree(Path(pwd.getpwnam(info.user).pw_dir) / workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    array, offloads, local = results["array"], results["offloads"], results["local"]
    ours = sum(array["ours_s"].values())
    slurm_part = array["wall_s"] - array["ours_s"]["import"]
    array["rest_s"] = array["wall_s"] - results["slurmctld"]["array_submit_to_last_end_s"] - ours
    results["ratios"] = {
        "offloads_over_array_total": offloads["wall_s"] / array["wall_s"],
        "offloads_over_array_without_import": offloads["wall_s"] / slurm_part,
        "local_over_array_total": local["wall_s"] / array["wall_s"],
        "target_offloads_over_array": 0.8 * K,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")

    r = results["ratios"]
    print(
        f"{len(ALPHAS)} points of {SLEEP:.0f} s each; K = {K} tasks at once: the node declares"
        f" {K} CPUs and each task asks for 1 (--max-parallel {K})"
    )
    print(f"slurm.conf SchedulerParameters={results['scheduler_parameters'] or '(Slurm defaults)'}")
    print(
        f"  array (one sbatch --array)   {array['wall_s']:7.1f} s  (Slurm: {array['slurm_s']} s"
        f" submit to last end; first queue wait {array['first_queue_wait_s']} s)"
    )
    print(
        f"    ours: {', '.join(f'{k} {v:.1f} s' for k, v in array['ours_s'].items())}"
        f" = {ours:.1f} s"
    )
    c = results["slurmctld"]
    runs, single = c["array_task_run_s"], c["single_queue_wait_s"]
    print(
        f"    slurmctld.log: {c['array_tasks_started']} tasks started"
        f" {c['array_queue_wait_s']:.2f} s after the submission, within"
        f" {c['array_start_spread_s']:.3f} s of each other; they ran {min(runs):.2f}-"
        f"{max(runs):.2f} s; submit to last end {c['array_submit_to_last_end_s']:.2f} s"
    )
    rest = array["wall_s"] - c["array_submit_to_last_end_s"] - ours
    print(
        f"    the rest, {rest:.1f} s: the CLI's start, SSH, the submission, noticing the end,"
        " closing the DVC workers, the record"
    )
    print(
        f"    the single jobs' queue waits: {', '.join(f'{w:.2f}' for w in single)} s"
        f" (they ran {', '.join(f'{r:.2f}' for r in c['single_run_s'])} s)"
    )
    print(f"  six sequential offloads      {offloads['wall_s']:7.1f} s")
    print(f"  six local sequential runs    {local['wall_s']:7.1f} s")
    print(
        f"  offloads / array: {r['offloads_over_array_total']:.2f}x end to end,"
        f" {r['offloads_over_array_without_import']:.2f}x without the import after the array"
        f" (target ≥ {r['target_offloads_over_array']:.1f}x)"
    )
    print(f"  local / array:    {r['local_over_array_total']:.2f}x")
    before, after = results["load_before"][0], results["load_after"][0]
    print(f"load average (1 min) {before:.2f} before, {after:.2f} after")
    print("results: bench/results/sweep.json")


if __name__ == "__main__":
    main()
