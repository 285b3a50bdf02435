"""``python -m service.healthcheck`` (the image's HEALTHCHECK) probes ``MLOPS_PORT``, the port
``python -m service`` listens on; a bad port value is one line."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.healthcheck import configured_port
from tests.conftest import REPO
from tests.support.ports import free_port


class Live(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/health/live" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Live)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def check(port: int | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.healthcheck"],
        env={"MLOPS_PORT": str(port), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_port_comes_from_mlops_port() -> None:
    assert configured_port({}) == 8000
    assert configured_port({"MLOPS_PORT": "8123"}) == 8123
    with pytest.raises(SystemExit, match="MLOPS_PORT='http' is not a TCP port"):
        configured_port({"MLOPS_PORT": "http"})


def test_healthy_on_the_configured_port_only(server: ThreadingHTTPServer) -> None:
    port = server.server_address[1]
    assert check(port).returncode == 0
    Live.status = 503
    try:
        failed = check(port)
    finally:
        Live.status = 200
    assert failed.returncode == 1 and "503" in failed.stderr


def test_unhealthy_when_nothing_listens() -> None:
    port = free_port()
    result = check(port)
    assert result.returncode == 1 and result.stderr.startswith(
        f"unhealthy: http://127.0.0.1:{port}/"
    )


def test_the_service_listens_where_the_check_looks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        env={"MLOPS_PORT": "8123", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "or MLOPS_PORT" in result.stdout
