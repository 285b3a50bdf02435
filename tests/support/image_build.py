"""Private containers-storage for building and running ``service/Dockerfile`` in tests.

Never /var/lib/containers. Two uses: ``ImageStorage.shared_cache()`` keeps the base image and
the build cache in ``~/.cache/mlops-image/test-storage`` so a second test run builds in seconds
(bounded: wiped when over ``CACHE_LIMIT_BYTES``; each session untags what it built), and
``ImageStorage(tmp)`` + ``remove()`` for a cold build that leaves nothing. The base image comes from
``.ci/image/bootstrap-base`` (Debian packages, cached in ~/.cache/mlops-image), because no
registry to pull ``python:3.11-slim-bookworm`` from is reachable here. podman runs containers
with runc and explicit ulimits (crun cannot start them on this host's hybrid cgroups) and
without a network (so no bridge or firewall rules are left behind).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.conftest import REPO

BASE_IMAGE = "localhost/python:3.11-slim-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CACHE_DIR = Path(os.environ.get("MLOPS_IMAGE_CACHE") or Path.home() / ".cache" / "mlops-image")
CACHE_LIMIT_BYTES = 3_000_000_000  # base + one build chain is ~1.2 GB; a lock change adds ~0.5
TEST_PREFIX = "mlops-test-"  # names of the containers the tests start


def prefetch_base() -> None:
    """On a fresh machine, start bootstrapping the base tarball in the background (90-260 s
    of debootstrap) so it overlaps the tests that run first; ``ensure_base`` then waits for it
    (the script holds a lock while it works). Nothing to do when the tarball is cached."""
    if (CACHE_DIR / "python-3.11-slim-bookworm.tar").is_file() or os.geteuid() != 0:
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "bootstrap.log").open("w") as log:
        subprocess.Popen(
            ["bash", str(REPO / ".ci/image/bootstrap-base")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLOPS_IMAGE_CACHE": str(CACHE_DIR)},
            start_new_session=True,
        )


@dataclass
class ImageStorage:
    root_dir: Path
    built: list[str] = field(default_factory=list)  # references to untag at close()
    _lock: IO[str] | None = field(default=None, repr=False)

    @classmethod
    def shared_cache(cls) -> ImageStorage:
        return cls(CACHE_DIR / "test-storage")

    def open(self) -> None:
        """Take the storage for this session (shared: parallel sessions may build in it too).

        Whoever finds it over the limit and alone wipes it first."""
        self.root_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = (self.root_dir.parent / f"{self.root_dir.name}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if self.size() > CACHE_LIMIT_BYTES:
                self.remove()
        except BlockingIOError:
            pass
        fcntl.flock(lock, fcntl.LOCK_SH)
        self._lock = lock
        self.root_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Stop this session's containers and untag its images (their layers stay as cache)."""
        names = self.podman("ps", "--all", "--format", "{{.Names}}", check=False).split()
        for name in names:
            if name.startswith(TEST_PREFIX):
                self.podman("rm", "--force", "--time", "0", name, check=False)
        for reference in self.built:
            self.podman("untag", reference, check=False)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def size(self) -> int:
        if not self.root.exists():
            return 0
        out = subprocess.run(
            ["du", "-s", "--block-size=1", str(self.root)], capture_output=True, text=True
        ).stdout
        return int(out.split()[0]) if out else 0

    @property
    def root(self) -> Path:
        return self.root_dir / "root"

    @property
    def runroot(self) -> Path:
        return self.root_dir / "run"

    def env(self, **extra: str) -> dict[str, str]:
        """What ``mlops image ...`` needs to build here: this storage, the local base image,
        and the host's CA bundle (pip reaches the index through a TLS-intercepting proxy)."""
        env = dict(os.environ)
        env.update(
            IMAGE_STORAGE_ROOT=str(self.root),
            IMAGE_RUNROOT=str(self.runroot),
            PYTHON_IMAGE=BASE_IMAGE,
        )
        if CA_BUNDLE.is_file():
            env["IMAGE_CA_BUNDLE"] = str(CA_BUNDLE)
        env.update(extra)
        return env

    def ensure_base(self) -> None:
        """Import the Debian-made base image (bootstrapping it first on a fresh machine).

        The shared cache is taken first if the caller did not (``open()``), so no other
        session wipes it while this one builds."""
        if self._lock is None and self.root_dir == CACHE_DIR / "test-storage":
            self.open()
        result = subprocess.run(
            ["bash", str(REPO / ".ci/image/bootstrap-base"), "--import"],
            env=self.env(),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"base image bootstrap failed: {result.stderr[-2000:]}")

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot)]
        cmd += ["--runtime", "runc", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed: {result.stderr[-1500:]}")
        return result.stdout

    def run_args(self) -> list[str]:
        """``podman run`` flags that work here: runc needs explicit rlimits; no network."""
        hard = subprocess.run(
            ["bash", "-c", "ulimit -Hn"], capture_output=True, text=True
        ).stdout.strip()
        return [
            "--ulimit",
            f"nofile=1024:{hard}",
            "--ulimit",
            "nproc=4096:4096",
            "--network",
            "none",
        ]

    def service_args(self, registry: Path, alias: str) -> list[str]:
        """``podman run`` flags for the service as a cluster runs it: read-only root with only
        the model cache writable (no tmpfs on /tmp, /run), a registry directory read-only."""
        return [
            *self.run_args(),
            "--health-interval",
            "disable",  # no systemd here for the timer; `podman healthcheck run` works
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/tmp/model-cache:rw,mode=1777",
            "--volume",
            f"{registry}:/registry:ro",
            "--env",
            "MLOPS_REGISTRY_URL=/registry",
            "--env",
            f"MLOPS_MODEL_ALIAS={alias}",
        ]

    def remove(self) -> None:
        """Stop every container and drop the whole storage (overlay mounts first)."""
        if self.root.exists():
            self.podman("rm", "--all", "--force", "--time", "0", check=False)
            subprocess.run(
                ["buildah", "--root", str(self.root), "--runroot", str(self.runroot)]
                + ["rm", "--all"],
                capture_output=True,
            )
            self.podman("rmi", "--all", "--force", check=False)
            # Not `podman system reset`: it also deletes the host's podman networks.
            prefix = str(self.root_dir) + "/"
            mounts = [
                line.split()[1]
                for line in Path("/proc/mounts").read_text().splitlines()
                if line.split()[1].startswith(prefix)
            ]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root_dir, ignore_errors=True)
