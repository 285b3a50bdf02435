"""A full runs dir on the login node: said in one line, and a rerun once there is room.

A job whose run dir filled the disk failed with a 0-byte log and nothing that said why, and its
failed run dir (kept for the log) went on holding the space a rerun needs. The runs dir here is
a real small filesystem: a 3 MiB tmpfs owned by the cluster user, mounted as its workdir.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Project

pytestmark = pytest.mark.integration

Factory = Callable[..., Project]


@pytest.fixture
def small_disk(cluster: Cluster) -> Iterator[Path]:
    user = pwd.getpwnam(cluster.info.user)
    # In /tmp, not pytest's 0700 tmp dir: the cluster user must reach it.
    path = Path(tempfile.mkdtemp(prefix="mlops-small-disk-", dir="/tmp"))
    options = f"size=3m,mode=0700,uid={user.pw_uid},gid={user.pw_gid}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
        path.rmdir()


def free_kb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024


def test_a_full_runs_dir_is_named_and_a_rerun_works_once_there_is_room(
    cluster: Cluster, project_factory: Factory, small_disk: Path
) -> None:
    env = cluster.env() | {"MLOPS_SLURM_WORKDIR": str(small_disk), "MLOPS_SLURM_MIN_FREE_MB": "1"}
    runs = small_disk / "runs"
    fixed = project_factory("mkdir -p out; echo ok > out/x")

    # Less than the minimum free before the submission: refused, nothing submitted.
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * ((free_kb(small_disk) - 512) * 1024))
    refused = fixed.run(env)
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: disk full on the login node: {runs} has "), refused.stderr
    assert "kB free, less than min_free_mb (1 MB)" in last and "Traceback" not in refused.stderr
    assert not cluster.jobs_named(f"mlops-{fixed.identity()}")
    filler.unlink()

    # A job that fills the disk: its log stays empty, the offload says why.
    hog = project_factory("mkdir -p out; cat /dev/zero > out/big")
    failed = hog.run(env)
    assert failed.returncode == 1, failed.stderr
    said = f"[slurm] disk full on the login node: {runs} has 0 kB free, less than min_free_mb"
    assert said in failed.stderr, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Slurm job ") and "; disk full on the login node" in last, last
    # Its run dir is gone (its log was streamed already): the space is back for a rerun.
    assert not (runs / hog.identity()).exists()
    assert free_kb(small_disk) > 2048

    rerun = fixed.run(env)
    assert rerun.returncode == 0, rerun.stderr
    assert (fixed.path / "out/x").read_text() == "ok\n"
