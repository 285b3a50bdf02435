"""DESIGN's fork test: another dataset and estimator touch only src/example, params.yaml, dvc.yaml.

The wine example below has a different input (13 tabular features, no image preprocessing),
other labels and another estimator family; the report and the registry take it unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from machinery.registry import Registry
from tests.support.workspace import Workspace

HERE = Path(__file__).parent
FORKER_MAY_TOUCH = ("src/example/", "params.yaml", "dvc.yaml", "dvc.lock")


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.clone(tmp_path_factory.mktemp("fork") / "ws")
    shutil.rmtree(ws.path / "src/example")
    shutil.copytree(HERE / "wine_example", ws.path / "src/example")
    shutil.copy(HERE / "wine_params.yaml", ws.path / "params.yaml")
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "fork: wine model")
    ws.dvc("repro")
    return ws


@pytest.mark.slow
def test_fork_changes_nothing_outside_the_example_params_and_dvc_yaml(forked: Workspace) -> None:
    changed = forked.git("diff", "--name-only", "HEAD~1", "HEAD").stdout.split()
    assert changed and all(path.startswith(FORKER_MAY_TOUCH) for path in changed), changed


@pytest.mark.slow
def test_fork_runs_the_whole_pipeline_and_reports_its_own_model(forked: Workspace) -> None:
    metrics = json.loads((forked.path / "eval/metrics.json").read_text())
    assert metrics["accuracy"] > 0.85
    md = (forked.path / "reports/report.md").read_text()
    assert "`wine-quality-grader` (gradient_boosting)" in md
    assert "input `features`: N × 13, float32" in md
    html = (forked.path / "reports/report.html").read_text()
    assert "data:image/png;base64," in html and "per class f1" in html


@pytest.mark.slow
def test_fork_model_publishes_to_the_registry_unchanged(forked: Workspace, tmp_path: Path) -> None:
    registry = Registry.from_url(str(tmp_path / "registry"))
    metrics = json.loads((forked.path / "eval/metrics.json").read_text())
    meta = registry.publish("wine-v1", forked.path / "models", metrics=metrics)
    assert meta.card.input.shape == [None, 13] and meta.card.preprocessing is None
    assert (
        registry.download("wine-v1", tmp_path / "dl").read_bytes()
        == (forked.path / "models/model.onnx").read_bytes()
    )


@pytest.mark.slow
def test_service_serves_the_fork_model_without_a_change(forked: Workspace, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.main import create_app
    from service.settings import Settings

    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish("wine-v1", forked.path / "models", metrics={"accuracy": 0.9})
    registry.move_alias("prod", "wine-v1", by="test")
    settings = Settings(
        registry_url=str(tmp_path / "registry"),
        model_alias="prod",
        model_cache_dir=tmp_path / "cache",
        alias_poll_seconds=0,
        auth_enabled=False,
    )
    with np.load(forked.path / "data/prepared/test.npz") as test:
        rows = test["X"][:3].tolist()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post("/predict", json={"instances": rows})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_tag"] == "wine-v1"
        assert {p["label"] for p in body["predictions"]} <= {"barolo", "grignolino", "barbera"}

        wrong_width = client.post("/predict", json={"instances": [[1.0] * 64]})
        assert wrong_width.status_code == 422 and "13" in wrong_width.text

        # No image preprocessing in this card: an upload is refused with a reason, not a 500.
        upload = client.post("/predict", files={"file": ("x.png", b"\x89PNG\r\n", "image/png")})
        assert 400 <= upload.status_code < 500
