"""The built image runs as it will in a cluster: read-only root, only the model cache
writable, non-root, no network; it serves a fixture model from a registry directory."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.registry import Registry
from tests.image.conftest import BuiltImage
from tests.support.fixture_models import FixtureModel, build_fixture_model
from tests.support.image_build import ImageStorage

# The first test here may build the image from nothing (a fresh machine under load: minutes).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

PORT = 8123  # not the image's default 8000: the HEALTHCHECK must follow MLOPS_PORT
TAG = "fixture-image-v1"
ALIAS = "staging"

# Runs inside the container (`podman exec -i NAME python - ARGS`): the container has no network,
# so the HTTP checks are made from its own loopback.
CHECKS = r"""
import base64, json, sys, time, urllib.error, urllib.request
port, token, png = int(sys.argv[1]), sys.argv[2], base64.b64decode(sys.argv[3])

def call(path, data=None, headers={}):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return [response.status, response.read().decode()]
    except urllib.error.HTTPError as exc:
        return [exc.code, exc.read().decode()]
    except OSError as exc:
        return [0, str(exc)]

deadline = time.monotonic() + 60
while True:
    ready = call("/health/ready")
    if ready[0] == 200 or time.monotonic() > deadline:
        break
    time.sleep(0.2)
png_type = {"Content-Type": "image/png"}
print(json.dumps({
    "ready": ready,
    "predict": call("/predict", png, {**png_type, "Authorization": f"Bearer {token}"}),
    "no_token": call("/predict", png, png_type),
}))
"""

PROCESSES = r"""
import json, pathlib
out = {}
for status in pathlib.Path("/proc").glob("[0-9]*/status"):
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    out[fields["Name"].strip()] = int(fields["Uid"].split()[0])
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Running:
    name: str
    model: FixtureModel
    predict_token: str


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def exec_python(storage: ImageStorage, name: str, script: str, *args: str) -> str:
    result = subprocess.run(
        ["podman", "--root", str(storage.root), "--runroot", str(storage.runroot)]
        + ["exec", "-i", name, "python", "-", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def start(storage: ImageStorage, image: BuiltImage, name: str, registry: Path, *env: str) -> None:
    storage.podman(
        "run",
        "--detach",
        "--name",
        name,
        *storage.service_args(registry, ALIAS),
        *[flag for value in env for flag in ("--env", value)],
        image.reference,
    )


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FixtureModel]:
    root = tmp_path_factory.mktemp("image-run")
    model = build_fixture_model(root / "model", kind="image", estimator="logreg")
    registry = Registry.from_url(str(root / "registry"))
    registry.publish(TAG, model.model_dir, metrics={"accuracy": 1.0})
    registry.move_alias(ALIAS, TAG, by="test-setup")
    # The service runs as uid 10001 and reads the mounted registry.
    subprocess.run(["chmod", "-R", "a+rX", str(root / "registry")], check=True)
    return root / "registry", model


@pytest.fixture(scope="module")
def running(
    image_storage: ImageStorage, built_image: BuiltImage, registry_dir: tuple[Path, FixtureModel]
) -> Iterator[Running]:
    registry, model = registry_dir
    name = f"mlops-test-{secrets.token_hex(4)}"
    predict, admin = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    start(
        image_storage,
        built_image,
        name,
        registry,
        f"MLOPS_PORT={PORT}",
        f"MLOPS_PREDICT_TOKEN_SHA256={sha256_hex(predict)}",
        f"MLOPS_ADMIN_TOKEN_SHA256={sha256_hex(admin)}",
    )
    try:
        yield Running(name, model, predict)
    finally:
        print(image_storage.podman("logs", name, check=False)[-2000:], file=sys.stderr)
        image_storage.podman("rm", "--force", "--time", "0", name, check=False)


def test_serves_ready_predict_and_refuses_a_request_without_token(
    image_storage: ImageStorage, running: Running
) -> None:
    png = base64.b64encode(running.model.image(0)).decode()
    out = json.loads(
        exec_python(image_storage, running.name, CHECKS, str(PORT), running.predict_token, png)
    )
    assert out["ready"][0] == 200, out
    assert out["predict"][0] == 200, out
    answer = json.loads(out["predict"][1])
    assert answer["model_tag"] == TAG
    assert answer["label"] == running.model.test_y[0]
    assert out["no_token"][0] == 401, out


def test_runs_as_non_root_with_only_the_model_cache_writable(
    image_storage: ImageStorage, built_image: BuiltImage, running: Running
) -> None:
    user = image_storage.podman(
        "image", "inspect", "--format", "{{.Config.User}}", built_image.reference
    )
    assert user.strip() == "10001:10001"
    uids = json.loads(exec_python(image_storage, running.name, PROCESSES))
    assert "tini" in uids and "python" in uids, uids  # tini is PID 1, the service its child
    assert set(uids.values()) == {10001}, uids
    probe = (
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path, 'w').close(); print(path, 'ok')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.strerror)\n"
    )
    out = exec_python(
        image_storage, running.name, probe, "/app/x", "/tmp/x", "/tmp/model-cache/x"
    ).splitlines()
    assert out == [
        "/app/x Read-only file system",
        "/tmp/x Read-only file system",
        "/tmp/model-cache/x ok",
    ]


def test_healthcheck_probes_the_configured_port(
    image_storage: ImageStorage, built_image: BuiltImage, running: Running
) -> None:
    # Ready first (the checks script waits for it), then the image's own HEALTHCHECK.
    exec_python(image_storage, running.name, CHECKS, str(PORT), "-", "")
    result = subprocess.run(
        ["podman", "--root", str(image_storage.root), "--runroot", str(image_storage.runroot)]
        + ["--runtime", "runc", "healthcheck", "run", running.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    health = image_storage.podman(
        "image", "inspect", "--format", "{{json .Config.Healthcheck}}", built_image.reference
    )
    assert "service.healthcheck" in health and "8000" not in health, health


def test_stop_during_start_up_is_prompt(
    image_storage: ImageStorage, built_image: BuiltImage, registry_dir: tuple[Path, FixtureModel]
) -> None:
    """SIGTERM right after start (imports, model download) ends the container at once: a
    Python PID 1 would ignore it and `podman stop` would wait its full 10 s, then SIGKILL."""
    name = f"mlops-test-stop-{secrets.token_hex(4)}"
    start(
        image_storage,
        built_image,
        name,
        registry_dir[0],
        f"MLOPS_PREDICT_TOKEN_SHA256={sha256_hex('p')}",
        f"MLOPS_ADMIN_TOKEN_SHA256={sha256_hex('a')}",
    )
    try:
        started = time.monotonic()
        image_storage.podman("stop", "--time", "10", name)
        seconds = time.monotonic() - started
        code = image_storage.podman("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        print(
            f"\n[image] podman stop during start-up: {seconds:.2f} s, exit {code}", file=sys.stderr
        )
        assert seconds < 5, f"podman stop took {seconds:.1f} s: SIGTERM was not acted on"
        assert code == "143", code  # ended by SIGTERM, not SIGKILL (137)
    finally:
        image_storage.podman("rm", "--force", "--time", "0", name, check=False)
