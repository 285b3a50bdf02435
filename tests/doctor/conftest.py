"""The real parts `mlops doctor` checks: SeaweedFS (with a read-only key too), the session's
Slurm + sshd, the local forge, a docker-registry with an htpasswd login; and a small git
project whose k8s/ holds no placeholder. ``configured`` is the fully right set of variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.slurm.conftest import Cluster, cluster  # noqa: F401 - the session's Slurm
from tests.support.forge_server import (  # noqa: F401 - forge_server is a fixture
    FORGEJO_TOKEN,
    GITLAB_TOKEN,
    ForgeServer,
    forge_server,
)
from tests.support.oci_registry import OciRegistry
from tests.support.s3 import S3Server

MLOPS = str(Path(sys.executable).parent / "mlops")
READ_ONLY_KEY = "doctor-read-only"
REGISTRY_USER = "pusher"
# Whatever a check fails on, none of these may appear in what the doctor prints.
FOREIGN = ("MLOPS_", "AWS_", "DVC_", "IMAGE_", "CI_", "GITHUB_", "GITLAB_", "FORGEJO_", "SLURM_")

STAGING = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../../base]
images:
  - name: inference
    newName: {image}
    digest: sha256:{digest}
"""


@dataclass
class Doctor:
    rc: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.report["checks"] if r["name"] == name)

    def failed(self) -> list[str]:
        return [r["name"] for r in self.report["checks"] if r["status"] == "fail"]


def forgejo_env(
    configured: dict[str, str], forge: ForgeServer, event: Path, token: str
) -> dict[str, str]:
    """The same settings as a Forgejo Actions job has them (comment and git token alike)."""
    env = {k: v for k, v in configured.items() if not k.startswith(("CI_", "GITLAB_"))}
    env |= forge.forgejo_env(event, token=token)
    return env | {"MLOPS_GIT_TOKEN": FORGEJO_TOKEN, "MLOPS_GIT_TOKEN_USER": "ci-bot"}


def run_doctor(env: dict[str, str], cwd: Path, *args: str) -> Doctor:
    proc = subprocess.run(
        [MLOPS, "doctor", "--json", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(proc.stdout) if proc.stdout.startswith("{") else {}
    return Doctor(proc.returncode, proc.stdout, proc.stderr, report)


@pytest.fixture(scope="module")
def doctor_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS of the module's own: it has a second, read-only key."""
    read_only = {
        "name": "reader",
        "credentials": [{"accessKey": READ_ONLY_KEY, "secretKey": uuid.uuid4().hex}],
        "actions": ["Read", "List"],
    }
    server = S3Server(tmp_path_factory.mktemp("doctor-s3"), extra_identities=[read_only])
    server.start()
    server.make_bucket("doctor")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    registry = OciRegistry(
        tmp_path_factory.mktemp("doctor-registry"), REGISTRY_USER, uuid.uuid4().hex
    )
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture
def project(tmp_path: Path, image_registry: OciRegistry) -> Path:
    """A git checkout (HEAD for the push check) with a pinned overlay (no placeholder)."""
    root = tmp_path / "project"
    overlay = root / "k8s" / "overlays" / "staging"
    overlay.mkdir(parents=True)
    image = f"{image_registry.host}/team/inference"
    (overlay / "kustomization.yaml").write_text(STAGING.format(image=image, digest="ab" * 32))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "."], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "init"], check=True)
    return root


@pytest.fixture
def configured(
    tmp_path: Path,
    project: Path,
    doctor_s3: S3Server,
    cluster: Cluster,  # noqa: F811
    forge_server: ForgeServer,  # noqa: F811
    image_registry: OciRegistry,
) -> dict[str, str]:
    """Every CI variable set right (GitLab flavour), pointing at the real local parts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env.update(
        {
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **doctor_s3.env,
            "DVC_REMOTE_URL": "s3://doctor/dvcstore",
            "MLOPS_REGISTRY_URL": "s3://doctor/registry",
            **cluster.info.env(),
            **forge_server.gitlab_env(),
            # Pushes go to the forge's own project URL (git smart HTTP), token in the header.
            "MLOPS_GIT_TOKEN": GITLAB_TOKEN,
            "IMAGE_NAME": f"{image_registry.host}/team/inference",
            "IMAGE_REGISTRY_USER": REGISTRY_USER,
            "IMAGE_REGISTRY_PASSWORD": str(image_registry.password),
            "IMAGE_REGISTRY_INSECURE": "1",
        }
    )
    return env
