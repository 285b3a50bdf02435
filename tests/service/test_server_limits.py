"""The limits a real ``python -m service`` enforces: request headers (the server's protocol,
before the app) and big-image decoding in low-priority processes under a pixel budget."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import ADMIN_TOKEN, ALIAS, PREDICT, PREDICT_TOKEN, sha256_hex
from tests.service.test_limits import blank_png, upload
from tests.support.process import is_running
from tests.support.service import service_process

pytestmark = pytest.mark.integration


@contextmanager
def serving(registry: Path, tmp_path: Path, **settings: str) -> Iterator[tuple[str, int]]:
    env = {
        "MLOPS_REGISTRY_URL": str(registry),
        "MLOPS_MODEL_ALIAS": ALIAS,
        "MLOPS_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_ALIAS_POLL_SECONDS": "0",
        "MLOPS_PREDICT_TOKEN_SHA256": sha256_hex(PREDICT_TOKEN),
        "MLOPS_ADMIN_TOKEN_SHA256": sha256_hex(ADMIN_TOKEN),
        **{f"MLOPS_{k.upper()}": v for k, v in settings.items()},
    }
    with service_process(env, tmp_path) as running:
        yield running


def raw_request(port: int, header_bytes: int, piece: int = 4096, body: bytes = b"") -> bytes:
    """GET /health/live with one header of ``header_bytes`` (and ``body``), sent in pieces of
    ``piece`` bytes, as a slow client would (one piece: the whole request in one ``sendall``);
    returns what the server answered (it may close before all is sent)."""
    request = (
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: "
        + b"a" * header_bytes
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for start in range(0, len(request), piece):
                sock.sendall(request[start : start + piece])
                if piece < len(request):
                    time.sleep(0.002)  # separate reads on the server, as a slow client gives
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_answer(sock)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def test_headers_and_big_images_on_a_real_server(registry_dir: Path, tmp_path: Path) -> None:
    limits = {"max_header_bytes": "8192", "decode_pixel_budget": "1000000", "decode_nice": "13"}
    with serving(registry_dir, tmp_path, **limits) as (base, pid):
        check_header_limit(base)
        decoders = check_decoding(base, pid)
        check_decoders_leave_with_the_service(pid, decoders)


def check_header_limit(base: str) -> None:
    port = int(base.rsplit(":", 1)[1])
    assert raw_request(port, 6000).startswith(b"HTTP/1.1 200")
    # A body in the same read as small headers is not header bytes.
    assert raw_request(port, 100, piece=1 << 20, body=b"b" * 200_000).startswith(b"HTTP/1.1 200")
    # Over the limit: never completed, completed by the last of several reads, or whole at once
    # (10 kB in one read is complete before any read is counted: only the exact sum sees it).
    cases = ((2_000_000, 4096), (10_000, 4096), (10_000, 1 << 20), (100_000, 1 << 20))
    for header_bytes, piece in cases:
        refused = raw_request(port, header_bytes, piece)
        assert refused.startswith(b"HTTP/1.1 431"), (header_bytes, piece, refused[:200])
        assert b'"request headers exceed the limit of 8192 bytes"' in refused
    live = httpx.get(f"{base}/health/live")
    assert live.status_code == 200  # still serving
    assert "server" not in live.headers  # no banner naming the server software


def check_decoding(base: str, pid: int) -> list[int]:
    """Four big images at once against a budget of one: one decodes (in a niced process), the
    others are told to come back; then there is room again."""
    image = blank_png(1000, 1000, "LA")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, headers=PREDICT, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/predict", files=upload(image)) for _ in range(4))
            )

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and 503 in statuses and set(statuses) <= {200, 503}, statuses
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 503)
    decoders = [
        child
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    assert decoders, "no decoder process"
    for child in decoders:
        stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[16]) == 13  # field 19 of /proc/PID/stat: nice (MLOPS_DECODE_NICE)
    single = httpx.post(f"{base}/predict", files=upload(image), headers=PREDICT, timeout=60)
    assert single.status_code == 200
    return [int(child) for child in decoders]


def check_decoders_leave_with_the_service(pid: int, decoders: list[int]) -> None:
    """A service killed outright (OOM killer, SIGKILL) must not leave its decoders behind."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_running(d) for d in decoders):
        time.sleep(0.1)
    assert not [d for d in decoders if is_running(d)], "decoder processes outlived the service"
