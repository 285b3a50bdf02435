"""Fixtures shared by every area: real servers on free 127.0.0.1 ports, stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3 import S3Server

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """A make that tests start runs as from a fresh shell, also when `make test` started pytest:
    with make's variables inherited it is a sub-make, which adds "make[1]: Entering/Leaving
    directory" lines to its output (a fork test read the wrong line only under `make test`)."""
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the whole session; tests take their own bucket (``s3_bucket``)."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()


@pytest.fixture
def private_s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A server of the test's own, which the test may stop and start (S3-down faults)."""
    server = S3Server(tmp_path / "s3")
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Integration tests are required: a skip (a missing server, a missing tool) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but every test is required here: {report.longrepr}"
