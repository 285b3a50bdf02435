"""Clients that go away or send broken framing, on a real ``python -m service``: the client
gets a JSON answer where one can still be sent, the metrics count what the client got (or 499
for a client that left), and nothing is logged or counted as a server error — a phantom 5xx
series would page on-call through the High5xxRatio alert."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import PREDICT_TOKEN
from tests.service.test_server_limits import read_answer, serving

pytestmark = pytest.mark.integration


def send_raw(port: int, request: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if not read:
            return b""  # closed at once: an aborted upload
        return read_answer(sock)


def request_counts(base: str) -> dict[tuple[str, str], float]:
    """``(route, status) -> count`` from the live ``/metrics``."""
    text = httpx.get(f"{base}/metrics").text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "mlops_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["route"], sample.labels["status"])
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def wait_for_count(base: str, key: tuple[str, str]) -> dict[tuple[str, str], float]:
    deadline = time.monotonic() + 10
    while (counts := request_counts(base)).get(key, 0) < 1:
        assert time.monotonic() < deadline, f"{key} never counted: {counts}"
        time.sleep(0.05)
    return counts


def test_clients_that_leave_or_break_framing_are_never_server_errors(
    registry_dir: Path, tmp_path: Path
) -> None:
    with serving(registry_dir, tmp_path) as (base, _pid):
        port = int(base.rsplit(":", 1)[1])
        auth = f"Authorization: Bearer {PREDICT_TOKEN}\r\n".encode()
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\n" + auth

        # An authenticated upload that stops after 1 KB of its declared 100 KB.
        send_raw(
            port,
            head + b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"x" * 1000,
            read=False,
        )
        counts = wait_for_count(base, ("/predict", "499"))

        # A chunked body whose chunk size is not hex: the server's parser answers 400.
        answer = send_raw(
            port,
            head + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"application/json" in answer
        counts = wait_for_count(base, ("/predict", "400"))

        # A Content-Length that is not a number: refused before any route, a JSON 400, counted.
        answer = send_raw(port, head + b"Content-Length: ten\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
        assert "malformed HTTP request" in detail
        counts = wait_for_count(base, ("unmatched", "400"))

        assert not [key for key in counts if key[1].startswith("5")], counts
        assert httpx.get(f"{base}/health/live").status_code == 200
    log = b"".join(path.read_bytes() for path in tmp_path.glob("service-*.log"))
    assert b"Exception in ASGI application" not in log, log.decode(errors="replace")[-3000:]
    assert b"Traceback" not in log
