"""The pipeline as a DVC user drives it, whatever example ``src/example`` holds: the contract
files, re-run rules and the baseline diff, through params and metrics the tests add themselves."""

from __future__ import annotations

import json
import re

import onnxruntime as ort
import pytest
import yaml

from machinery.modelcard import read_card, sha256_file
from tests.support.workspace import Workspace

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_full_pipeline_writes_every_contract_file(reproduced: Workspace) -> None:
    ws = reproduced.path
    card = read_card(ws / "models/model_card.json")
    assert card.onnx_sha256 == sha256_file(ws / "models/model.onnx")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", card.code_commit)
    assert card.labels and card.data_version

    session = ort.InferenceSession(str(ws / "models/model.onnx"))
    (onnx_input,) = session.get_inputs()
    assert onnx_input.name == card.input.name
    assert list(onnx_input.shape)[1:] == card.input.shape[1:]
    assert [o.name for o in session.get_outputs()] == [card.output.label, card.output.probabilities]

    metrics = json.loads((ws / "eval/metrics.json").read_text())
    assert metrics and all(isinstance(k, str) for k in metrics)
    images = sorted((ws / "eval/plots/images").glob("*.png"))
    assert images and all(p.read_bytes()[:8] == PNG for p in images)
    for out in ("reports/report.md", "reports/report.html"):
        assert (ws / out).stat().st_size > 0


@pytest.mark.slow
def test_second_repro_runs_nothing(workspace: Workspace) -> None:
    out = workspace.dvc("repro").stdout
    assert workspace.stages_run(out) == []
    assert "Data and pipelines are up to date" in out


@pytest.mark.slow
def test_a_change_in_a_stage_section_marks_exactly_that_stage(workspace: Workspace) -> None:
    """Each stage reads only its own section: a key added under it changes that stage alone
    (``dvc repro`` then re-runs it and whatever consumes its outputs)."""
    sectioned = {
        stage: spec["params"][0]
        for stage, spec in workspace.stages().items()
        if spec.get("params") and isinstance(spec["params"][0], str)
    }
    assert sectioned
    original = (workspace.path / "params.yaml").read_text()
    for stage, section in sectioned.items():
        params = yaml.safe_load(original)
        params[section] = {**(params.get(section) or {}), "probe_added_by_test": 1}
        (workspace.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(workspace.dvc("status", "--json").stdout)
        assert list(status) == [stage], (section, status)
        assert status[stage] == [{"changed deps": {"params.yaml": {section: "modified"}}}], status
    (workspace.path / "params.yaml").write_text(original)
    assert json.loads(workspace.dvc("status", "--json").stdout) == {}


@pytest.mark.slow
def test_report_with_a_baseline_shows_the_metric_and_param_changes(
    workspace: Workspace,
) -> None:
    """``mlops report --baseline REV``: a param and a metric of the test's own, changed since
    the baseline commit, show as old → new rows."""
    metrics_path = workspace.path / "eval/metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "probe_score": 0.5}))
    with (workspace.path / "params.yaml").open("a") as params:
        params.write("\nprobe:\n  knob: 1\n")
    workspace.dvc("commit", "-f", "-q")
    workspace.git("add", "-A")
    workspace.git("commit", "-q", "-m", "baseline results")

    metrics_path.write_text(json.dumps({**metrics, "probe_score": 0.75}))
    workspace.set_param("probe.knob", 2)
    workspace.run("mlops", "report", "--baseline", "HEAD")
    md = (workspace.path / "reports/report.md").read_text()
    assert "### Against `HEAD`" in md
    assert re.search(r"\| params.yaml \| probe.knob \| 1 \| 2 \|", md), md
    # Names are escaped for GFM (probe\_score renders as probe_score).
    assert re.search(r"\| eval/metrics.json \| probe\\?_score \| 0\.5 \| 0\.75 \|", md), md
