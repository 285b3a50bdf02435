"""Module-scoped real parts for the pipeline tests: one Slurm cluster, one forge, one bucket."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster
from tests.support.image_build import ImageStorage
from tests.support.oci_registry import OciRegistry


@dataclass
class SlurmCluster:
    info: ClusterInfo
    workdir: str

    def env(self) -> dict[str, str]:
        return {**self.info.env(), "MLOPS_SLURM_WORKDIR": self.workdir}

    def sacct_jobs(self) -> list[str]:
        """Every job the login user ever ran on this cluster, from accounting."""
        done = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-u", self.info.user, "-S", "2000-01-01", "-o", "JobID"],
            env={**os.environ, "SLURM_CONF": self.info.slurm_conf},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return sorted(done.stdout.split())


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    reuse = os.environ.get("MLOPS_SLURM_TEST_CLUSTER")  # a `make cluster-up` dir, while developing
    workdir = f"~/.mlops-ci-{secrets.token_hex(3)}"
    if reuse:
        yield SlurmCluster(ClusterInfo.load(Path(reuse)), workdir)
        return
    # Not pytest's tmp dir: it is 0700 and the login user must reach the munge socket.
    state = Path(tempfile.mkdtemp(prefix="mlops-ci-slurm-", dir="/tmp"))
    local = LocalCluster(state, cpus=max(2, os.cpu_count() or 1))
    info = local.up()
    try:
        yield SlurmCluster(info, workdir)
    finally:
        local.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A real image registry (CNCF distribution) on 127.0.0.1, without auth."""
    registry = OciRegistry(tmp_path_factory.mktemp("oci-registry"))
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def image_storage() -> Iterator[ImageStorage]:
    """The image tests' shared containers-storage (~/.cache/mlops-image): the Debian-made base
    image and the layer cache of earlier builds, so the CI test's build takes seconds once any
    image test or `make bench-image` ran on this machine (cold, it bootstraps the base first)."""
    storage = ImageStorage.shared_cache()
    storage.open()
    try:
        storage.ensure_base()
        yield storage
    finally:
        storage.close()
