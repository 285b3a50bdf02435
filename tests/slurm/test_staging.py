"""Staging on the real cluster: streams both ways, the deps cache, a full disk, pruning, the job
environment (build time limit, read-only venv with a manifest) and Apptainer's environment."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Project, small_disk

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("timeout_job")]

Factory = Callable[..., Project]
BIG = 48 << 20


# Peak RSS of the offload alone. Not from our own wait4: a child spawned from this (large)
# process inherits its high-water mark at exec, so a small wrapper spawns the offload.
MEASURE = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(rc)"
)


def _run_measured(project: Project, env: dict[str, str]) -> tuple[int, str, int]:
    """Run the offload; return its exit code, stderr and peak RSS in bytes."""
    argv = [sys.executable, "-c", MEASURE, *project.offload_argv()]
    proc = subprocess.run(argv, cwd=project.path, env=env, capture_output=True, text=True)
    *lines, rss = proc.stderr.strip().splitlines()
    return proc.returncode, "\n".join(lines), int(rss) * 1024


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        for _ in range(size >> 20):
            fh.write(os.urandom(1 << 20))


def test_stage_in_and_out_stream_and_large_deps_travel_once(
    cluster: Cluster, project_factory: Factory
) -> None:
    small = project_factory("mkdir -p out && cp data/input.txt out/copy")
    rc, err, small_rss = _run_measured(small, cluster.env())
    assert rc == 0, err

    big = project_factory("mkdir -p out && cp data/input.txt out/copy")
    _write_random(big.path / "data/input.txt", BIG)
    rc, err, big_rss = _run_measured(big, cluster.env())
    assert rc == 0, err
    assert filecmp.cmp(big.path / "out/copy", big.path / "data/input.txt", shallow=False)
    # 48 MB went up and came back: held whole, that is 100+ MB more than the small run.
    assert big_rss - small_rss < BIG // 2, (small_rss, big_rss)

    # Another identity with the same dep: the cluster links it from its cache.
    other = project_factory("mkdir -p out && cmp data/input.txt - < data/input.txt && touch out/x")
    shutil.copy(big.path / "data/input.txt", other.path / "data/input.txt")
    proc = other.run(cluster.env())
    assert proc.returncode == 0, proc.stderr
    sent = re.search(r"staged in ([0-9.]+) (kB|MB)", proc.stderr)
    assert sent and sent.group(2) == "kB", proc.stderr
    assert "50.3 MB of deps from the cluster's cache" in proc.stderr


@pytest.fixture
def tiny_disk(cluster: Cluster) -> Iterator[Path]:
    """A 1 MB filesystem the login user owns, for a workdir that fills up."""
    with small_disk(cluster, "1m") as mount:
        yield mount


def test_a_full_disk_is_named_and_the_staging_dir_is_removed(
    cluster: Cluster, project_factory: Factory, tiny_disk: Path
) -> None:
    project = project_factory("mkdir -p out && touch out/x")
    _write_random(project.path / "data/input.txt", 2 << 20)
    # No minimum free: this is the snapshot that does not fit (test_disk_full has the minimum).
    env = cluster.env() | {
        "MLOPS_SLURM_WORKDIR": str(tiny_disk / "wd"),
        "MLOPS_SLURM_MIN_FREE_MB": "0",
    }
    for _ in range(2):  # a retry must not find the quota still full of the first attempt
        proc = project.run(env, timeout=60)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], lines
        assert [n for n in os.listdir(tiny_disk / "wd/runs") if n != ".lock"] == []


def test_finished_run_dirs_are_pruned_after_the_configured_age(
    cluster: Cluster, project_factory: Factory
) -> None:
    runs = cluster.runs
    runs.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3 * 86400
    made = {
        "work-00000000000000a1": True,  # finished 3 days ago: goes
        "work-00000000000000a2.17": True,  # a replaced job's run dir: goes
        ".work-00000000000000a3.dead": True,  # a staging dir a killed run left: goes
        "work-00000000000000a4": False,  # finished just now: stays
        "work-00000000000000a5": False,  # old but never seen finished (maybe watched): stays
    }
    for name in made:
        (runs / name).mkdir()
        (runs / name / "job.log").write_text("x")
    (runs / "work-00000000000000a1/.finished").touch()
    (runs / "work-00000000000000a4/.finished").touch()
    for name in made:
        for path in [runs / name, *(runs / name).iterdir()]:
            if name != "work-00000000000000a4":
                os.utime(path, (old, old), follow_symlinks=False)
    subprocess.run(["chown", "-R", cluster.info.user, str(runs.parent)], check=True)
    project = project_factory("mkdir -p out && touch out/x")
    try:
        proc = project.run(cluster.env() | {"MLOPS_SLURM_PRUNE_AFTER_DAYS": "1"})
        assert proc.returncode == 0, proc.stderr
        for name, goes in made.items():
            assert (runs / name).exists() is not goes, name
        identity = json.loads(project.report_path.read_text())["identity"]
        assert (runs / identity / ".finished").is_file()  # prunable once it is old enough
    finally:
        # The session's workdir is shared: run dirs no job made must not outlive this test
        # (test_faults counts run dirs without a job as leftovers of a failed start).
        for name in made:
            shutil.rmtree(runs / name, ignore_errors=True)


def _shim_dir(cluster: Cluster) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlops-shim-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shim_dir(cluster: Cluster) -> Iterator[Path]:
    yield from _shim_dir(cluster)


def test_the_environment_build_has_its_own_time_limit(
    cluster: Cluster, project_factory: Factory, shim_dir: Path
) -> None:
    slow = shim_dir / "python3"
    slow.write_text("#!/bin/sh\nsleep 60\n")
    slow.chmod(0o755)
    project = project_factory("mkdir -p out && touch out/x", env_kind="venv")
    env = cluster.env() | {
        "MLOPS_SLURM_ENV__PYTHON": str(slow),
        "MLOPS_SLURM_ENV__BUILD_TIMEOUT": "2",
    }
    started = time.monotonic()
    proc = project.run(env, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert "building the job environment took more than 2 s (env.build_timeout)" in lines[-1]
    assert time.monotonic() - started < 40


def test_apptainer_gets_the_jobs_environment(
    cluster: Cluster, project_factory: Factory, shim_dir: Path
) -> None:
    # Apptainer cannot be installed here: a stand-in that keeps apptainer's --cleanenv rule
    # (only --env NAME=VALUE reaches the command) on the real compute node.
    shim = shim_dir / "apptainer"
    shim.write_text(
        "#!/bin/bash\n"
        'envs=(); [ "$1" = exec ] && shift\n'
        "while [ $# -gt 0 ]; do case $1 in\n"
        '  --env) envs+=("$2"); shift 2;;\n'
        "  --bind|--pwd) shift 2;;\n"
        "  --cleanenv) shift;;\n"
        "  *) break;; esac; done\n"
        'shift  # the image\nexec env -i PATH=/usr/bin:/bin "${envs[@]}" "$@"\n'
    )
    shim.chmod(0o755)
    project = project_factory("mkdir -p out && env > out/env.txt", env_kind="apptainer")
    env = cluster.env() | {
        "MLOPS_SLURM_ENV__IMAGE": "/images/train.sif",
        "MLOPS_SLURM_ENV__SETUP": json.dumps([f"export PATH={shim_dir}:$PATH"]),
    }
    proc = project.run(env)
    assert proc.returncode == 0, proc.stderr
    seen = dict(
        ln.split("=", 1)
        for ln in (project.path / "out/env.txt").read_text().splitlines()
        if "=" in ln
    )
    assert seen["PYTHONUNBUFFERED"] == "1"
    assert "MLOPS_CODE_COMMIT" in seen  # what the model card records
    assert seen["PYTHONPATH"].endswith(project.identity())


def test_the_shared_venv_is_read_only_and_checked_before_use(
    cluster: Cluster, project_factory: Factory
) -> None:
    lock = "# no packages: the venv itself is what is checked\n"
    first = project_factory(
        "mkdir -p out && python -c 'import sys; print(sys.prefix)' > out/p", env_kind="venv"
    )
    (first.path / "requirements.lock").write_text(lock)
    proc = first.run(cluster.env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    venv = Path((first.path / "out/p").read_text().strip())
    writable = [
        p for p in [venv, *venv.rglob("*")] if not p.is_symlink() and p.stat().st_mode & 0o222
    ]
    assert writable == []
    # A job from an untrusted branch installs into the shared venv...
    bin_dir = venv / "bin"
    bin_dir.chmod(bin_dir.stat().st_mode | stat.S_IWUSR)
    (bin_dir / "evil").write_text("#!/bin/sh\n")
    # ...and the next run refuses it instead of importing from it.
    second = project_factory("mkdir -p out && touch out/x", env_kind="venv")
    (second.path / "requirements.lock").write_text(lock)
    proc = second.run(cluster.env(), timeout=120)
    assert proc.returncode != 0
    assert "changed after it was built (manifest mismatch)" in proc.stderr.strip().splitlines()[-1]
