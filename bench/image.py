"""The inference image: size, cold and warm build seconds, and how fast it stops.

    make bench-image            (root: buildah, podman, debootstrap; ~3-6 min)

Builds ``service/Dockerfile`` with ``mlops image build`` into a private storage under a temp
dir (removed at the end; the cached Debian base tarball is reused when present): once cold
(empty layer cache: every wheel downloaded and installed), once warm (nothing changed), once
after touching a service file (what a code-only commit costs). Then ``podman stop`` right after
start, with tini as PID 1 (the image) and with Python as PID 1 (``--entrypoint`` bypassing
tini): the second waits out the stop timeout. Printed, written to bench/results/image.json,
not asserted; the machine is shared, so seconds are noisy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from machinery.registry import Registry  # noqa: E402
from tests.support.fixture_models import build_fixture_model  # noqa: E402
from tests.support.image_build import ImageStorage  # noqa: E402

NAME = "localhost/bench/inference"
STOP_TIMEOUT = 10


def timed_build(storage: ImageStorage, tag: str, context: Path) -> float:
    env = storage.env(IMAGE_NAME=NAME, IMAGE_TAG=tag)
    started = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "image", "build", "--context", str(context)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def fixture_registry(root: Path) -> Path:
    """A registry directory the service can start from: alias ``staging`` → a fixture model."""
    model = build_fixture_model(root / "model", kind="image")
    registry = Registry.from_url(str(root / "registry"))
    registry.publish("bench-v1", model.model_dir, metrics={})
    registry.move_alias("staging", "bench-v1", by="bench")
    subprocess.run(["chmod", "-R", "a+rX", str(root / "registry")], check=True)
    return root / "registry"


def stop_seconds(storage: ImageStorage, tag: str, registry: Path, *entrypoint: str) -> float:
    """``podman stop`` sent as soon as ``podman run`` returns: the service is still starting."""
    name = f"mlops-bench-{tag}-{os.getpid()}"
    storage.podman(
        "run",
        "--detach",
        "--name",
        name,
        *storage.service_args(registry, "staging"),
        "--env",
        "MLOPS_AUTH_ENABLED=false",
        *entrypoint,
        f"{NAME}:{tag}",
    )
    try:
        started = time.monotonic()
        storage.podman("stop", "--time", str(STOP_TIMEOUT), name)
        return time.monotonic() - started
    finally:
        storage.podman("rm", "--force", "--time", "0", name, check=False)


def main() -> None:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-image-") as tmp:
        storage = ImageStorage(Path(tmp) / "storage")
        context = Path(tmp) / "context"
        # A copy of the build context, so touching a file does not touch the checkout.
        subprocess.run(["mkdir", "-p", str(context / "src")], check=True)
        subprocess.run(["cp", "-r", str(REPO / "service"), str(context)], check=True)
        subprocess.run(["cp", "-r", str(REPO / "src/machinery"), str(context / "src")], check=True)
        subprocess.run(["cp", str(REPO / ".dockerignore"), str(context)], check=True)
        try:
            started = time.monotonic()
            storage.ensure_base()
            results["base_image_s"] = time.monotonic() - started
            results["cold_build_s"] = timed_build(storage, "cold", context)
            results["warm_build_s"] = timed_build(storage, "warm", context)
            with (context / "service" / "__init__.py").open("a") as f:
                f.write("# bench: a code-only change\n")
            results["code_change_build_s"] = timed_build(storage, "code", context)
            size = storage.podman("image", "inspect", "--format", "{{.Size}}", f"{NAME}:warm")
            results["image_mb"] = int(size) / 1e6
            registry = fixture_registry(Path(tmp))
            results["stop_with_tini_s"] = stop_seconds(storage, "warm", registry)
            results["stop_python_pid1_s"] = stop_seconds(
                storage, "warm", registry, "--entrypoint", '["python", "-m", "service"]'
            )
        finally:
            storage.remove()
    for key, value in results.items():
        print(f"{key:<22} {value:8.1f}")
    out = REPO / "bench" / "results" / "image.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO)} (shared 2-core machine: noisy)")


if __name__ == "__main__":
    main()
