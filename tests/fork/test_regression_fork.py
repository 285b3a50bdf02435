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

from machinery.registry import Registry
from tests.fork.test_fork import assert_only_forker_files_changed, first_run, pytest_in, swap_in
from tests.support.markdown import alignments, links, table_with_header
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import Workspace

HERE = Path(__file__).parent
TAG = "diabetes-v1"


def fork_to_regression(dest: Path) -> Workspace:
    """Copy the repository as it is (uncommitted changes included) and swap in the diabetes
    example, its tests, its params and its stages (the evaluate stage's plots are predicted vs
    actual and residuals: ``tests/fork/stages.py``)."""
    ws = swap_in(dest, "diabetes")
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
    # The metrics as a reader sees them: one row each, numbers right-aligned.
    values = table_with_header(md, "metric", "value")
    assert [row[0] for row in values[1:]] == ["rmse", "mae", "r2", "n_test"]
    assert values[1][1] == f"{metrics['rmse']:.4f}".rstrip("0")
    assert alignments(md)[0] == ["", "right"]
    # Predicted vs actual and residuals: the PNGs (in report.html) and the dvc plots data.
    assert "- predicted vs actual (`predicted_vs_actual.png`)" in md
    assert "- residuals (`residuals.png`)" in md
    assert "- Residuals (test set): plot data `eval/plots/residuals.json`, 111 points" in md
    assert "- task regression: output `variable`, N × 1, float32" in md
    html = (forked.path / "reports/report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    status = forked.dvc("status").stdout
    assert "changed" not in status, status


@pytest.mark.slow
def test_the_comment_judges_regression_metrics_by_their_direction(
    forked: Workspace, tmp_path: Path
) -> None:
    work = forked.copy_to(tmp_path / "ws")
    url = "https://forge.example.org/team/diabetes/actions/runs/7"
    same = work.run("mlops", "comment", "--dry-run", "--baseline", "HEAD", "--report-url", url)
    metrics = json.loads((work.path / "eval/metrics.json").read_text())
    rmse = metrics["rmse"]
    assert same.stdout.splitlines()[1] == f"**rmse {rmse:.4f} (unchanged) vs HEAD**".replace(
        f"{rmse:.4f}", f"{rmse:.4f}".rstrip("0")
    )
    assert [text for text, _ in links(same.stdout)].count("HTML report") == 2

    # A worse fit on the same model: rmse and mae up (worse), r2 down (worse), each in red.
    worse = {**metrics, "rmse": rmse + 5, "mae": metrics["mae"] + 4, "r2": metrics["r2"] - 0.1}
    (work.path / "eval/metrics.json").write_text(json.dumps(worse))
    result = work.run("mlops", "comment", "--dry-run", "--baseline", "HEAD")
    md = result.stdout
    assert ", worse) vs HEAD**" in md.splitlines()[1] and "The model changed" not in md
    diff = table_with_header(md, "file", "metric")
    changes = {row[1]: row[4] for row in diff[1:]}
    assert changes["rmse"] == "+5 🔴" and changes["mae"] == "+4 🔴"
    assert changes["r2"] == "-0.1 🔴"
    assert alignments(md)[1] == ["", "", "right", "right", "right"]


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
