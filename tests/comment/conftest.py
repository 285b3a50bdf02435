from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from machinery.cli import app
from tests.support.forge_server import forge_server  # noqa: F401  (the fixture)
from tests.support.report_project import ReportProject, build_report_project, env


@pytest.fixture(scope="session")
def _report_project_template(tmp_path_factory: pytest.TempPathFactory) -> ReportProject:
    base = tmp_path_factory.mktemp("report-project")
    return build_report_project(base / "project", base / "card")


@pytest.fixture
def project(
    _report_project_template: ReportProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ReportProject:
    """A private copy of the fixture project, as the current directory, with a clean env."""
    dest = tmp_path / "project"
    shutil.copytree(_report_project_template.path, dest, symlinks=True)
    clean = env()
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in clean.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(dest)
    return ReportProject(dest)


Mlops = Callable[..., Result]


@pytest.fixture
def mlops(monkeypatch: pytest.MonkeyPatch) -> Mlops:
    """``mlops ARGS`` in this process (the real CLI app), with extra environment variables."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    return run
