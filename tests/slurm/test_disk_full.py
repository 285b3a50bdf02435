"""A full runs dir on the login node: said in one line, and a rerun once there is room.

A job whose run dir filled the disk failed with a 0-byte log and nothing that said why, and its
failed run dir (kept for the log) went on holding the space a rerun needs. The runs dir here is
a real small filesystem: a 3 MiB tmpfs owned by the cluster user, mounted as its workdir.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Project, small_disk

pytestmark = pytest.mark.integration

Factory = Callable[..., Project]


@pytest.fixture
def disk(cluster: Cluster) -> Iterator[Path]:
    with small_disk(cluster, "3m") as mount:
        yield mount


def free_kb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024


def test_a_full_runs_dir_is_named_and_a_rerun_works_once_there_is_room(
    cluster: Cluster, project_factory: Factory, disk: Path
) -> None:
    env = cluster.env() | {"MLOPS_SLURM_WORKDIR": str(disk), "MLOPS_SLURM_MIN_FREE_MB": "1"}
    runs = disk / "runs"
    fixed = project_factory("mkdir -p out; echo ok > out/x")

    # Less than the minimum free before the submission: refused, nothing submitted.
    filler = disk / "filler"
    filler.write_bytes(b"\0" * ((free_kb(disk) - 512) * 1024))
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
    assert free_kb(disk) > 2048

    rerun = fixed.run(env)
    assert rerun.returncode == 0, rerun.stderr
    assert (fixed.path / "out/x").read_text() == "ok\n"
