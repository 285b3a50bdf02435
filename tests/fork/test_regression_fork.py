"""A regression fork, performed: diabetes + ridge (scikit-learn's bundled data, nothing
downloaded) swapped in for the digits example, as a team bringing a regression would.

The forker replaces ``src/example/``, ``tests/example/``, ``params.yaml`` and the evaluate
stage's plots in ``dvc.yaml`` (a regression draws predicted vs actual and residuals, not a
confusion matrix). Then the template's pipeline, registry and service must take the model as
it is: ``dvc repro`` through the report, publish to a real S3 registry, serve, ``/predict``
values equal to the ONNX model's, and the forker's own tests pass in the fork.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from machinery.registry import Registry
from tests.fork.test_fork import assert_only_forker_files_changed, first_run, pytest_in, swap_in
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import Workspace

HERE = Path(__file__).parent
TAG = "diabetes-v1"
# What the forker's evaluate writes instead of a confusion matrix and per-class F1.
REGRESSION_PLOTS = [
    {
        "eval/plots/predictions.json": {
            "template": "scatter",
            "x": "actual",
            "y": "predicted",
            "title": "Predicted vs actual (test set)",
        }
    },
    {
        "eval/plots/residuals.json": {
            "template": "scatter",
            "x": "predicted",
            "y": "residual",
            "title": "Residuals (test set)",
        }
    },
]


def fork_to_regression(dest: Path) -> Workspace:
    """Copy the repository as it is (uncommitted changes included) and swap in the diabetes
    example, its tests, its params and its evaluate stage's plots."""
    ws = swap_in(dest, "diabetes")
    dvc_yaml = ws.path / "dvc.yaml"
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    pipeline["stages"]["evaluate"]["plots"] = REGRESSION_PLOTS
    dvc_yaml.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "fork: diabetes regression")
    return ws


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return first_run(
        fork_to_regression(tmp_path_factory.mktemp("regression-fork") / "ws"), "diabetes"
    )


@pytest.mark.slow
def test_regression_fork_changes_nothing_outside_the_example_params_and_dvc_yaml(
    forked: Workspace,
) -> None:
    assert_only_forker_files_changed(forked)


@pytest.mark.slow
def test_the_pipeline_trains_a_regression_card_and_reports_its_metrics(
    forked: Workspace,
) -> None:
    card = json.loads((forked.path / "models/model_card.json").read_text())
    assert card["task"] == "regression" and card["labels"] == []
    assert card["output"] == {"name": "variable", "shape": [None, 1], "dtype": "float32"}
    metrics = json.loads((forked.path / "eval/metrics.json").read_text())
    md = (forked.path / "reports/report.md").read_text()
    assert "`diabetes-progression` (ridge)" in md
    for name in ("rmse", "mae", "r2"):
        assert name in md
    assert f"{metrics['rmse']:.4g}"[:4] in md
    status = forked.dvc("status").stdout
    assert "changed" not in status, status


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_forkers_own_tests_pass_in_the_fork(forked: Workspace) -> None:
    pytest_in(forked, "tests/example")


@pytest.mark.slow
@pytest.mark.integration
def test_the_regression_model_publishes_to_an_s3_registry(
    forked: Workspace,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url(f"s3://{s3_bucket}/registry")
    metrics = json.loads((forked.path / "eval/metrics.json").read_text())
    meta = registry.publish(TAG, forked.path / "models", metrics=metrics)
    assert meta.card.task == "regression" and meta.metrics["r2"] == metrics["r2"]
    assert (
        registry.download(TAG, tmp_path / "dl").read_bytes()
        == (forked.path / "models/model.onnx").read_bytes()
    )


@pytest.mark.slow
def test_the_service_serves_the_regression_fork(forked: Workspace, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.main import create_app
    from service.settings import Settings

    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish(TAG, forked.path / "models", metrics={"rmse": 55.0})
    registry.move_alias("prod", TAG, by="test")
    settings = Settings(
        registry_url=str(tmp_path / "registry"),
        model_alias="prod",
        model_cache_dir=tmp_path / "cache",
        alias_poll_seconds=0,
        auth_enabled=False,
    )
    with np.load(forked.path / "data/prepared/test.npz") as test:
        rows = test["X"][:5]
    session = ort.InferenceSession(str(forked.path / "models/model.onnx"))
    [expected] = session.run(None, {"features": rows})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/health/ready").status_code == 200
        answer = client.post("/predict", json={"instances": rows.tolist()})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_tag"] == TAG
        values = [p["value"] for p in body["predictions"]]
        np.testing.assert_allclose(values, expected.ravel(), rtol=1e-6)
        metas = client.get("/get_experiment_metas").json()["experiments"]
        assert [(m["tag"], m["task"]) for m in metas] == [(TAG, "regression")]
