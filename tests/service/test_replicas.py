"""Real uvicorn processes on free 127.0.0.1 ports: swap under load, restart, replicas converge."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from machinery.registry import Registry
from machinery.registry.s3_store import S3Store
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
    publish_both,
    sha256_hex,
)
from tests.support.ports import free_port, wait_for_port
from tests.support.process import stop_process
from tests.support.relay import TcpRelay
from tests.support.s3 import S3Server

pytestmark = pytest.mark.integration

CLIENTS = 16
LOAD_SECONDS = 20.0
SWAPS = 10


@contextmanager
def service_process(
    registry: Path | str,
    tmp_path: Path,
    poll: float = 0,
    *,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> Iterator[str]:
    port = free_port()
    environ = dict(os.environ)
    environ.update(
        MLOPS_REGISTRY_URL=str(registry),
        MLOPS_MODEL_ALIAS=ALIAS,
        MLOPS_MODEL_CACHE_DIR=str(tmp_path / f"cache-{port}"),
        MLOPS_ALIAS_POLL_SECONDS=str(poll),
        MLOPS_PREDICT_TOKEN_SHA256=sha256_hex(PREDICT_TOKEN),
        MLOPS_ADMIN_TOKEN_SHA256=sha256_hex(ADMIN_TOKEN),
        **(env or {}),
    )
    log = (tmp_path / f"service-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if wait_ready:
            await_ready(base)
        yield base
    finally:
        stop_process(proc)
        log.close()


def await_ready(base: str, timeout: float = 60) -> None:
    """Wait for the port, then for ``/health/ready``; the service imports for a few seconds."""
    port = int(base.rsplit(":", 1)[1])
    wait_for_port(port, timeout=timeout)
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "service never became ready"
        time.sleep(0.1)


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


TAG_C = "exp-c"


def aws_env(server: S3Server, tmp_path: Path, port: int | None = None) -> dict[str, str]:
    """The service process sees only the test server (through ``port`` if given)."""
    return {
        **server.env,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port or server.s3_port}",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def s3_registry(
    s3_server: S3Server, s3_bucket: str, trained: Trained
) -> Iterator[tuple[str, TcpRelay]]:
    """Three tags on the real S3 server (alias → TAG_A), and a relay in front of it that a
    test can stall: the slow registry the races below need, on a real network path."""
    registry = Registry(S3Store(s3_bucket, "replicas", client=s3_server.client()))
    publish_both(registry, trained)
    registry.publish(TAG_C, trained.a, metrics={})  # same bytes, another tag: fine
    relay = TcpRelay(s3_server.s3_port)
    try:
        yield f"s3://{s3_bucket}/replicas", relay
    finally:
        relay.release()
        relay.cut()


def test_live_answers_while_the_first_model_downloads(
    s3_server: S3Server, s3_registry: tuple[str, TcpRelay], tmp_path: Path
) -> None:
    url, relay = s3_registry
    env = {**aws_env(s3_server, tmp_path, relay.port), "MLOPS_FIRST_LOAD_WAIT_SECONDS": "0.5"}
    relay.hold()  # the registry answers nothing: a download that takes a long time
    with service_process(url, tmp_path, env=env, wait_ready=False) as base:
        wait_for_port(int(base.rsplit(":", 1)[1]), timeout=60)
        started = time.monotonic()
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 503, ready.text
        relay.release()
        while ready_tag_or_none(base) != TAG_A:
            assert time.monotonic() - started < 20, "never became ready after the registry woke"
            time.sleep(0.05)


def ready_tag_or_none(base: str) -> str | None:
    response = httpx.get(f"{base}/health/ready", timeout=5)
    return ready_tag(base) if response.status_code == 200 else None


def test_a_poll_never_undoes_a_swap_on_its_own_replica(
    s3_server: S3Server, s3_registry: tuple[str, TcpRelay], tmp_path: Path
) -> None:
    """Replica 1 reaches the registry through a relay the test stalls; replica 2 directly.
    Replica 2 moves the alias, then replica 1 is asked to swap elsewhere while its registry is
    slow, so its poller fires during that swap. A poll that read the alias before the swap
    moved it must not switch replica 1 back afterwards."""
    url, relay = s3_registry
    poll = 0.3
    slow = aws_env(s3_server, tmp_path, relay.port)
    rounds = [(TAG_B, TAG_C), (TAG_A, TAG_B), (TAG_C, TAG_A)]  # (replica 2's, replica 1's)
    direct = aws_env(s3_server, tmp_path)
    with (
        service_process(url, tmp_path, poll=poll, env=slow, wait_ready=False) as first,
        service_process(url, tmp_path, poll=poll, env=direct, wait_ready=False) as second,
    ):
        await_ready(first)  # both import at the same time
        await_ready(second)
        wrong: list[str] = []
        for theirs, ours in rounds:
            assert swap_on(second, theirs).status_code == 200
            relay.hold()
            answer: list[httpx.Response] = []
            mover = threading.Thread(target=lambda: answer.append(swap_on(first, ours)))
            mover.start()
            time.sleep(3 * poll)  # replica 1's poller fires while its swap waits on S3
            relay.release()
            mover.join(timeout=30)
            assert answer and answer[0].status_code == 200, answer
            # Nobody moves the alias now: replica 1 must keep serving what it was asked for.
            watch_until = time.monotonic() + 4 * poll
            while time.monotonic() < watch_until:
                tag = ready_tag(first)
                if tag != ours:
                    wrong.append(f"asked {ours}, served {tag}")
                time.sleep(0.02)
            converge(second, ours, poll)
        assert wrong == [], wrong


def swap_on(base: str, tag: str) -> httpx.Response:
    return httpx.post(f"{base}/replace_ml_model", json={"tag": tag}, headers=ADMIN, timeout=30)


def converge(base: str, tag: str, poll: float) -> None:
    deadline = time.monotonic() + poll + 5
    while ready_tag(base) != tag:
        assert time.monotonic() < deadline, f"{base} did not converge on {tag}"
        time.sleep(0.05)
