"""Real uvicorn processes on free 127.0.0.1 ports: swap under load, restart, replicas converge."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.service.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    ALIAS,
    PREDICT,
    PREDICT_TOKEN,
    TAG_A,
    TAG_B,
    Trained,
    sha256_hex,
)
from tests.support.ports import free_port, wait_for_port
from tests.support.process import stop_process

pytestmark = pytest.mark.integration

CLIENTS = 16
LOAD_SECONDS = 20.0
SWAPS = 10


@contextmanager
def service_process(registry: Path, tmp_path: Path, poll: float = 0) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        MLOPS_REGISTRY_URL=str(registry),
        MLOPS_MODEL_ALIAS=ALIAS,
        MLOPS_MODEL_CACHE_DIR=str(tmp_path / f"cache-{port}"),
        MLOPS_ALIAS_POLL_SECONDS=str(poll),
        MLOPS_PREDICT_TOKEN_SHA256=sha256_hex(PREDICT_TOKEN),
        MLOPS_ADMIN_TOKEN_SHA256=sha256_hex(ADMIN_TOKEN),
    )
    log = (tmp_path / f"service-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "service never became ready"
            time.sleep(0.1)
        yield base
    finally:
        stop_process(proc)
        log.close()


def ready_tag(base: str) -> str:
    tag: str = httpx.get(f"{base}/health/ready").json()["model_tag"]
    return tag


def test_swap_under_load_never_drops_a_request(
    registry_dir: Path, tmp_path: Path, trained: Trained
) -> None:
    images = [trained.image(i) for i in range(len(trained.test_y))]
    statuses: Counter[int] = Counter()
    tags: Counter[str] = Counter()
    swapped: list[str] = []

    async def client_loop(base: str, number: int, stop_at: float) -> None:
        async with httpx.AsyncClient(base_url=base, headers=PREDICT, timeout=30) as client:
            i = number
            while time.monotonic() < stop_at:
                files = {"file": ("d.png", images[i % len(images)], "image/png")}
                response = await client.post("/predict", files=files)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    tags[response.json()["model_tag"]] += 1
                i += 1

    async def swapper(base: str, stop_at: float) -> None:
        interval = (stop_at - time.monotonic()) / (SWAPS + 1)
        async with httpx.AsyncClient(base_url=base, headers=ADMIN, timeout=30) as client:
            for n in range(SWAPS):
                await asyncio.sleep(interval)
                tag = TAG_B if n % 2 == 0 else TAG_A
                response = await client.post("/replace_ml_model", json={"tag": tag})
                assert response.status_code == 200, response.text
                swapped.append(tag)

    async def run(base: str) -> None:
        stop_at = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(
            swapper(base, stop_at), *(client_loop(base, n, stop_at) for n in range(CLIENTS))
        )

    with service_process(registry_dir, tmp_path) as base:
        assert ready_tag(base) == TAG_A
        asyncio.run(run(base))
    print(f"swap under load: {sum(statuses.values())} requests, {dict(statuses)}, {dict(tags)}")
    assert len(swapped) == SWAPS
    assert set(statuses) == {200}, statuses
    assert set(tags) == {TAG_A, TAG_B}, tags
    assert sum(statuses.values()) > 1000

    # A restarted pod resolves the alias the swaps moved: the last swapped tag, not the first.
    last = swapped[-1]
    assert last == TAG_A  # ten alternating swaps from A end on A; move once more to prove it
    with service_process(registry_dir, tmp_path) as base:
        assert ready_tag(base) == last
        response = httpx.post(
            f"{base}/replace_ml_model", json={"tag": TAG_B}, headers=ADMIN, timeout=30
        )
        assert response.status_code == 200
    with service_process(registry_dir, tmp_path) as base:
        assert ready_tag(base) == TAG_B
        response = httpx.post(
            f"{base}/predict",
            files={"file": ("d.png", images[0], "image/png")},
            headers=PREDICT,
        )
        assert response.json()["model_tag"] == TAG_B


def test_second_replica_converges_within_the_poll_interval(
    registry_dir: Path, tmp_path: Path
) -> None:
    poll = 1.0
    with (
        service_process(registry_dir, tmp_path, poll=poll) as first,
        service_process(registry_dir, tmp_path, poll=poll) as second,
    ):
        assert ready_tag(first) == ready_tag(second) == TAG_A
        response = httpx.post(
            f"{first}/replace_ml_model", json={"tag": TAG_B}, headers=ADMIN, timeout=30
        )
        assert response.status_code == 200
        swapped_at = time.monotonic()
        assert ready_tag(first) == TAG_B
        # One poll interval, plus the load of a small model and some scheduling slack.
        while ready_tag(second) != TAG_B:
            assert time.monotonic() - swapped_at < poll + 2.0, "replica did not converge"
            time.sleep(0.05)
        metrics = httpx.get(f"{second}/metrics").text
        assert 'mlops_model_swaps_total{trigger="poll"} 1.0' in metrics
