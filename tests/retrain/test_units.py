"""The parts of the receiver and of the publish step that need no server: the cool-down on an
injected clock, the CI files' variable names agreeing with what the receiver sends, and the
publish step's refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from machinery.retrain.alerts import RetrainRequest
from machinery.retrain.cooldown import CoolDown

REPO = Path(__file__).resolve().parents[2]


def test_the_cool_down_follows_the_clock_it_is_given() -> None:
    now = [1000.0]
    cool = CoolDown(6 * 3600, lambda: now[0])
    assert cool.reserve("g1") is None
    now[0] += 3600
    assert cool.reserve("g1") == 5 * 3600  # 5 h left
    assert cool.reserve("g2") is None  # each group its own
    now[0] += 5 * 3600
    assert cool.reserve("g1") is None  # 6 h after the first: a new run
    cool.release("g1")  # a run the forge would not start frees its group
    assert cool.reserve("g1") is None


def test_the_ci_files_read_the_variables_the_receiver_sends() -> None:
    request = RetrainRequest("g", "LiveAccuracyBelowCard", "why", "[]", "exp-1")
    workflow = yaml.safe_load((REPO / ".forgejo/workflows/retrain.yml").read_text())
    inputs = workflow[True]["workflow_dispatch"]["inputs"]
    assert set(inputs) == set(request.inputs())
    env = workflow["env"]
    for name in request.variables():
        assert env[name] == "${{ inputs.%s }}" % name.removeprefix("MLOPS_RETRAIN_").lower()
    gitlab = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    (rule,) = gitlab["retrain"]["rules"]
    assert (
        '$CI_PIPELINE_SOURCE == "trigger"' in rule["if"] and "$MLOPS_RETRAIN_REASON" in rule["if"]
    )
    # A triggered pipeline never reaches a job that moves prod or bumps an overlay.
    for job in ("publish", "deploy", "promote"):
        assert all('$CI_PIPELINE_SOURCE != "trigger"' in r["if"] for r in gitlab[job]["rules"])
    assert "prod" not in " ".join(gitlab["retrain"]["script"])


def test_publish_outside_a_retrain_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "machinery.cli", "retrain", "publish"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: MLOPS_RETRAIN_REASON is empty: this is not a retrain run (the alert receiver "
        "sets it; by hand: MLOPS_RETRAIN_REASON='why' make retrain-publish)"
    ]


def test_every_setting_and_metric_is_documented() -> None:
    from machinery.retrain.metrics import ReceiverMetrics
    from machinery.retrain.settings import ENV_PREFIX, RetrainSettings

    doc = (REPO / "docs" / "retraining.md").read_text()
    for name in RetrainSettings.model_fields:
        env = f"{ENV_PREFIX}{name.upper()}"
        short = "_" + name.upper()
        assert env in doc or f"`{short}`" in doc or f"/ `{short}`" in doc, env
    for metric in ReceiverMetrics.create().registry.collect():
        assert f"`{metric.name}_total`" in doc, metric.name
