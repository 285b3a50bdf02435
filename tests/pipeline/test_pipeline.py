"""The example pipeline as a DVC user drives it: repro, params changes, experiments, diffs."""

from __future__ import annotations

import json
import re

import onnxruntime as ort
import pytest

from machinery.modelcard import read_card, sha256_file
from tests.support.workspace import Workspace

STAGES = ["data", "train", "evaluate", "report"]


@pytest.mark.slow
def test_full_pipeline_meets_accuracy_and_writes_every_contract_file(
    reproduced: Workspace,
) -> None:
    ws = reproduced.path
    metrics = json.loads((ws / "eval/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert set(metrics["f1_per_class"]) == {str(d) for d in range(10)}

    card = read_card(ws / "models/model_card.json")
    assert card.onnx_sha256 == sha256_file(ws / "models/model.onnx")
    assert card.input.shape == [None, 64]
    assert card.preprocessing is not None and (
        card.preprocessing.width,
        card.preprocessing.height,
    ) == (8, 8)
    assert (
        card.data_version
        == json.loads((ws / "data/prepared/data_version.json").read_text())["data_version"]
    )
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", card.code_commit)
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= set(card.library_versions)

    session = ort.InferenceSession(str(ws / "models/model.onnx"))
    assert [o.name for o in session.get_outputs()] == [card.output.label, card.output.probabilities]

    confusion = json.loads((ws / "eval/plots/confusion.json").read_text())
    assert len(confusion) == metrics["n_test"]
    assert (ws / "eval/plots/images/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_second_repro_runs_nothing(workspace: Workspace) -> None:
    out = workspace.dvc("repro").stdout
    assert workspace.stages_run(out) == []
    assert "Data and pipelines are up to date" in out


@pytest.mark.slow
def test_changing_a_train_param_reruns_exactly_train_evaluate_report(
    workspace: Workspace,
) -> None:
    workspace.set_param("train.svc.C", 3.0)
    out = workspace.dvc("repro").stdout
    assert workspace.stages_run(out) == ["train", "evaluate", "report"]


@pytest.mark.slow
def test_changing_a_data_param_reruns_everything(workspace: Workspace) -> None:
    workspace.set_param("data.seed", 7)
    assert workspace.stages_run(workspace.dvc("repro").stdout) == STAGES


@pytest.mark.slow
def test_experiments_and_metrics_diff_between_commits(workspace: Workspace) -> None:
    workspace.git("add", "-A")
    workspace.git("commit", "-q", "-m", "baseline results")

    workspace.dvc("exp", "run", "-S", "train.estimator=logreg", "-n", "logreg-try")
    shown = json.loads(workspace.dvc("exp", "show", "--json").stdout)
    assert "logreg-try" in json.dumps(shown)

    workspace.dvc("exp", "apply", "logreg-try")
    diff = json.loads(workspace.dvc("metrics", "diff", "HEAD", "--json").stdout)
    assert "accuracy" in diff["eval/metrics.json"]
    params = json.loads(workspace.dvc("params", "diff", "HEAD", "--json").stdout)
    assert params["params.yaml"]["train.estimator"] == {"old": "svc", "new": "logreg"}
    plots = workspace.dvc("plots", "diff", "HEAD", "--json")
    assert "eval/plots/confusion.json" in plots.stdout


@pytest.mark.slow
def test_report_with_a_baseline_shows_the_metric_and_param_changes(
    workspace: Workspace,
) -> None:
    workspace.git("add", "-A")
    workspace.git("commit", "-q", "-m", "baseline results")
    workspace.set_param("train.estimator", "random_forest")
    workspace.dvc("repro")
    workspace.run("mlops", "report", "--baseline", "HEAD")
    md = (workspace.path / "reports/report.md").read_text()
    assert "### Against `HEAD`" in md
    assert re.search(r"\| params.yaml \| train.estimator \| svc \| random_forest \|", md)
    assert re.search(r"\| eval/metrics.json \| accuracy \| 0\.\d+ \| 0\.\d+ \|", md)
