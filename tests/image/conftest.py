"""The real image: built once per session from ``service/Dockerfile`` with ``mlops image build``
(buildah) into a private storage, pushed by ``mlops image push`` to a real registry with a
login, and removed with the storage at the end."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.support.image_build import ImageStorage, prefetch_base
from tests.support.oci_registry import OciRegistry

IMAGE_PATH = "template/inference"  # repository path inside the registry


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fresh machine: the base image bootstraps while the tests before these run."""
    if any("tests/image/" in item.nodeid or "tests/ci/" in item.nodeid for item in session.items):
        prefetch_base()


@dataclass(frozen=True)
class BuiltImage:
    name: str  # HOST:PORT/template/inference
    tag: str
    seconds: float

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


def mlops(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def image_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageStorage]:
    storage = ImageStorage.shared_cache()
    storage.open()
    try:
        started = time.monotonic()
        storage.ensure_base()
        print(f"\n[image] base image ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield storage
    finally:
        storage.close()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    registry = OciRegistry(
        tmp_path_factory.mktemp("oci-registry"), user="ci", password=secrets.token_urlsafe(12)
    )
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def image_env(image_storage: ImageStorage, oci_registry: OciRegistry) -> dict[str, str]:
    """The CI variables of a main pipeline pushing to the local registry (explicit IMAGE_*)."""
    assert oci_registry.user and oci_registry.password
    return image_storage.env(
        IMAGE_NAME=f"{oci_registry.host}/{IMAGE_PATH}",
        IMAGE_REGISTRY_USER=oci_registry.user,
        IMAGE_REGISTRY_PASSWORD=oci_registry.password,
        IMAGE_REGISTRY_INSECURE="1",
    )


@pytest.fixture(scope="session")
def built_image(image_env: dict[str, str], image_storage: ImageStorage) -> BuiltImage:
    """Built with the layer cache of earlier runs (cold: `make bench-image`)."""
    started = time.monotonic()
    result = mlops("image", "build", env=image_env)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    built = BuiltImage(image_env["IMAGE_NAME"], head, seconds)
    image_storage.built.append(built.reference)
    size = int(image_storage.podman("image", "inspect", "--format", "{{.Size}}", built.reference))
    print(
        f"\n[image] built {built.reference} in {seconds:.1f} s; size {size / 1e6:.0f} MB",
        file=sys.stderr,
    )
    return built


@pytest.fixture(scope="session")
def pushed(
    built_image: BuiltImage, image_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    record = tmp_path_factory.mktemp("image-record") / "image.json"
    result = mlops("image", "push", env={**image_env, "IMAGE_RECORD": str(record)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data: dict[str, Any] = json.loads(record.read_text())
    data["record_path"] = str(record)
    return data
