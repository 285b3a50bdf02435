"""A real ``python -m service`` on a free 127.0.0.1 port, stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.ports import free_port, wait_for_port
from tests.support.process import stop_process
from tests.support.workspace import REPO


@contextmanager
def service_process(env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, int]]:
    """Start the service with ``env`` (``MLOPS_*`` settings) over the current environment;
    yields its base URL and PID once ``/health/ready`` answers 200."""
    port = free_port()
    log = (log_dir / f"service-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
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
        yield base, proc.pid
    finally:
        stop_process(proc)
        log.close()
