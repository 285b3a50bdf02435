"""Offload overhead: our own steps per offloaded stage, and the CLI's start-up.

    make bench-offload          (root: starts a local Slurm + sshd, stops it afterwards)

Builds a small throwaway project (1 MB dep, a ~1 s CPU-bound stage writing a 1 MB out: not the
example, so a fork's bench measures the same thing) and offloads it over SSH to the local
cluster: once cold (a fresh workdir) and several times warm (new identities). Prints each
phase: our steps (connect, stage-in, detection, stage-out, accounting) against the 1 s target,
Slurm's queue wait and the job's run apart. Also times ``mlops --help`` and ``mlops offload``
with transport none against a bare ``python -c pass`` (target: 0.3 s), with bytecode written
(the first run compiles it; ``PYTHONDONTWRITEBYTECODE`` would make every start compile).
Then the same stage in each job environment on the same cluster, each in a workdir of its own so
its first run is cold: ``none`` (the node's python3), ``venv`` (built on the login node from an
empty lock, then reused) and ``charliecloud`` (a small podman image: converted with ch-convert
and staged on the first run, reused after), and prints each mode's extra seconds over ``none``
for the first and the warm runs. ``--image REF`` uses another podman image (e.g. the one
``make image`` built, with IMAGE_STORAGE_ROOT/IMAGE_RUNROOT set for its storage).
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
MODES = ("none", "venv", "charliecloud")
# The bench image when no --image is given: the Debian base the image tests use, plus a venv.
CONTAINERFILE = """\
FROM localhost/python:3.11-slim-bookworm
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
"""
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
    # For the venv mode: the stage needs nothing beyond the standard library.
    (path / "requirements.lock").write_text("# no packages: the stage uses the stdlib only\n")
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
        # A command as cheap as `true` that still makes the stage's out (a stage that exits 0
        # without its outs fails, as DVC would).
        "mlops offload (none, mkdir)": timed(
            [MLOPS, "offload", STAGE, "--", "mkdir", "-p", "out"], ws, env, runs
        ),
    }


Run = tuple[float, dict[str, Any]]


def bench_image(tmp: Path) -> tuple[Any, str]:
    """A small image in the tests' image storage (the cached Debian base plus a venv)."""
    sys.path[:0] = [str(REPO)]
    from tests.support.image_build import ImageStorage

    storage = ImageStorage.shared_cache()
    storage.ensure_base()
    (tmp / "Containerfile").write_text(CONTAINERFILE)
    reference = f"localhost/mlops-bench-charliecloud:{secrets.token_hex(4)}"
    storage.podman(
        "build", "--isolation", "chroot", "--pull=never", "-t", reference,
        "-f", str(tmp / "Containerfile"), str(tmp), timeout=900,
    )  # fmt: skip
    storage.built.append(reference)
    return storage, reference


def mode_rows(modes: dict[str, tuple[Run, list[Run]]]) -> dict[str, dict[str, float]]:
    """Wall seconds of each mode's first and warm (median) runs, the extra over ``none``, and
    where a first run's extra time went (the venv build, the image conversion and staging)."""
    out: dict[str, dict[str, float]] = {}
    for mode, ((cold_wall, cold_report), warm) in modes.items():
        t = cold_report["timings_s"]
        row = {
            "first": cold_wall,
            "warm": statistics.median(w for w, _ in warm),
            "environment": float(t.get("environment", 0.0)),
            "image_convert": float(t.get("image_convert", 0.0)),
            "image_stage": float(t.get("image_stage", 0.0)),
            "image_warm": statistics.median(
                float(r["timings_s"].get("image", 0.0)) for _, r in warm
            ),
        }
        out[mode] = row
    for row in out.values():
        row["extra_first"] = row["first"] - out["none"]["first"]
        row["extra_warm"] = row["warm"] - out["none"]["warm"]
    return out


def main() -> None:
    sys.path[:0] = [str(REPO / "src")]
    from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm offloaded runs")
    parser.add_argument("--startup-runs", type=int, default=5, help="timed CLI starts")
    parser.add_argument("--cluster-dir", type=Path, help="reuse a running `make cluster-up`")
    parser.add_argument(
        "--image", help="podman image for the charliecloud mode (default: build a small one)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    tmp.chmod(0o755)  # the cluster's login user must reach the munge socket below it
    cluster: LocalCluster | None = None
    info: ClusterInfo | None = None
    workdir = ""
    workdirs: list[str] = []
    storage: Any = None
    modes: dict[str, tuple[Run, list[Run]]] = {}
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
        workdirs.append(workdir)
        cold = run_offload(ws, remote_env)
        warm = [run_offload(ws, remote_env) for _ in range(args.warm)]
        modes["none"] = (cold, warm)
        image = args.image
        if image is None:
            storage, image = bench_image(tmp)
        for mode in MODES[1:]:
            # A workdir per mode: each mode's first run is cold (venv built, image staged).
            wd = f".mlops-bench-{mode}-{secrets.token_hex(3)}"
            workdirs.append(wd)
            extra = {**info.env(), "MLOPS_SLURM_WORKDIR": f"~/{wd}", "MLOPS_SLURM_ENV__KIND": mode}
            if mode == "charliecloud":
                extra |= {"MLOPS_SLURM_ENV__IMAGE": image, "MLOPS_CH_CACHE": str(tmp / "ch")}
                if storage is not None:
                    extra |= {
                        "IMAGE_STORAGE_ROOT": str(storage.root),
                        "IMAGE_RUNROOT": str(storage.runroot),
                    }
            env = base_env(extra)
            modes[mode] = (run_offload(ws, env), [run_offload(ws, env) for _ in range(args.warm)])
    finally:
        if cluster is not None:
            cluster.down()
        if storage is not None:
            storage.close()
        if info is not None:
            home = Path(pwd.getpwnam(info.user).pw_dir)
            for wd in workdirs:  # staged images are read-only
                subprocess.run(["chmod", "-R", "u+w", str(home / wd)], capture_output=True)
                shutil.rmtree(home / wd, ignore_errors=True)
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
        "modes": mode_rows(modes),
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
    rows = mode_rows(modes)
    print(
        f"job environment{'first':>9}{'warm':>9}{'+first':>9}{'+warm':>8}"
        "   (seconds of wall; + = more than none, same run)"
    )
    for mode, r in rows.items():
        print(
            f"  {mode:13}{r['first']:9.2f}{r['warm']:9.2f}"
            + (f"{r['extra_first']:+9.2f}{r['extra_warm']:+8.2f}" if mode != "none" else "")
        )
    venv, ch = rows["venv"], rows["charliecloud"]
    print(f"venv first run: built the venv in {venv['environment']:.2f} s")
    print(
        f"charliecloud first run: ch-convert {ch['image_convert']:.2f} s, staging the image "
        f"{ch['image_stage']:.2f} s; warm: image lookup and check {ch['image_warm']:.2f} s"
    )
    for name in ("mlops --help", "mlops offload (none, mkdir)"):
        ok = "meets" if start[name] <= STARTUP_TARGET_S else "MISSES"
        print(f"{name}: {start[name]:.2f} s {ok} the {STARTUP_TARGET_S} s target")


if __name__ == "__main__":
    main()
