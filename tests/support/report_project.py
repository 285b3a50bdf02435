"""A small git + DVC project holding what the pipeline writes (metrics, plots, card, Slurm
record), built from fixture files: the report and comment tests never run or read the example.

``main`` has the baseline metrics/params; the workspace (branch ``feature``) has the new ones, so
``dvc metrics diff main`` / ``dvc params diff main`` give a real diff.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from PIL import Image, ImageDraw
from typer.testing import CliRunner, Result

from tests.support.fixture_models import build_fixture_model
from tests.support.workspace import GIT_IDENTITY

LABELS = ["low", "mid", "high"]
BASE_METRICS = {"accuracy": 0.98, "log_loss": 0.31, "n_test": 120, "fit_s": 2.5}
NEW_METRICS = {"accuracy": 0.9844, "log_loss": 0.27, "n_test": 100, "fit_s": 2.5}
PER_CLASS = [
    {"label": "low", "precision": 1.0, "recall": 0.95, "f1": 0.9744, "support": 40},
    {"label": "mid", "precision": 0.9512, "recall": 0.975, "f1": 0.963, "support": 40},
    {"label": "high", "precision": 0.975, "recall": 1.0, "f1": 0.9873, "support": 20},
]
SLURM_RECORD = {
    "transport": "ssh",
    "source": "sacct",
    "job_id": "4711",
    "reattached": False,
    "node": "node01",
    "partition": "debug",
    "state": "COMPLETED",
    "exit_code": 0,
    "queue_wait_s": 1.2,
    "run_time_s": 754.0,
    "time_limit_s": 3600.0,
    "alloc_cpus": 2,
    "total_cpu_s": 1300.0,
    "cpu_efficiency": 0.8621,
    "max_rss_bytes": 314572800,
    "stage_efficiency": 0.8621,
    "short_job": False,
}
IMAGES = ["confusion_matrix.png", "per_class_precision_recall.png"]


def png(seed: int) -> bytes:
    image = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(image).rectangle((8 + seed * 8, 8, 40, 40), fill=(30, 60, 200))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def env() -> dict[str, str]:
    """The environment the project's commands run in: this venv first, no DVC analytics, and no
    CI variables inherited from whatever runs the tests."""
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CI_", "GITLAB_", "GITHUB_", "FORGEJO_", "MLOPS_"))
    }
    out.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        DVC_NO_ANALYTICS="1",
        **GIT_IDENTITY,
    )
    return out


@dataclass
class ReportProject:
    path: Path

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        subprocess.run(
            args, cwd=self.path, env={**env(), **(extra_env or {})}, check=True, capture_output=True
        )

    def write_json(self, rel: str, data: Any) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=1) + "\n")

    def set_card(self, **changes: Any) -> None:
        card_path = self.path / "models/model_card.json"
        card = json.loads(card_path.read_text())
        card.update(changes)
        card_path.write_text(json.dumps(card, indent=1))


def build_report_project(dest: Path, card_cache: Path) -> ReportProject:
    """``card_cache``: where the fixture model is built once and reused."""
    if not (card_cache / "model_card.json").is_file():
        build_fixture_model(card_cache, kind="tabular")
    project = ReportProject(dest)
    dest.mkdir(parents=True)
    (dest / "models").mkdir()
    shutil.copy(card_cache / "model_card.json", dest / "models/model_card.json")
    project.set_card(
        params={"estimator": "logreg", "seed": 7, "logreg": {"C": 1.0, "fit_intercept": True}}
    )
    (dest / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "metrics": ["eval/metrics.json"],
                "params": ["params.yaml"],
                # The report reads only declared plot data (machinery.report.declared).
                "plots": ["eval/plots/per_class.json"],
            }
        )
    )
    params = {"train": {"C": 1.0, "penalty": "l2"}, "report": {"headline": "", "directions": {}}}
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    project.write_json("eval/metrics.json", BASE_METRICS)
    project.write_json("eval/plots/per_class.json", PER_CLASS)
    for seed, name in enumerate(IMAGES):
        (dest / "eval/plots/images").mkdir(parents=True, exist_ok=True)
        (dest / "eval/plots/images" / name).write_bytes(png(seed))
    project.write_json("reports/slurm/train.json", SLURM_RECORD)
    project.run("git", "init", "-q", "-b", "main")
    project.run("dvc", "init", "-q")
    project.run("dvc", "config", "core.analytics", "false")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "baseline")
    project.run("git", "checkout", "-q", "-b", "feature")
    project.write_json("eval/metrics.json", NEW_METRICS)
    params["train"]["C"] = 2.0
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    project.run("git", "commit", "-q", "-am", "C=2")
    return project


# -- fixtures: import them into a conftest or test module -----------------------------------


@pytest.fixture(scope="session")
def report_project_template(tmp_path_factory: pytest.TempPathFactory) -> ReportProject:
    """Built once per session, however many modules import this fixture."""
    base = tmp_path_factory.getbasetemp() / "report-project"
    if (base / "project" / ".git").is_dir():
        return ReportProject(base / "project")
    shutil.rmtree(base, ignore_errors=True)
    return build_report_project(base / "project", base / "card")


@pytest.fixture
def project(
    report_project_template: ReportProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ReportProject:
    """A private copy of the fixture project, as the current directory, with a clean env."""
    dest = tmp_path / "project"
    shutil.copytree(report_project_template.path, dest, symlinks=True)
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
    from machinery.cli import app

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    return run
