"""The retrain run on both forges' real definitions: GitLab's triggered pipeline under
gitlab-ci-local (``CI_PIPELINE_SOURCE=trigger`` with the receiver's variables) and Forgejo's
``retrain`` workflow_dispatch under act. It runs the DVC pipeline, publishes to ``staging``
only (never ``prod``), and carries the alert's reason into the tag message and the summary."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.registry.errors import AliasNotFound
from machinery.registry.registry import Registry
from tests.ci.gitrepo import Origin, git
from tests.ci.pipelines import (
    FIXTURE_TEST_CI_PATHS,
    VENV,
    ForgejoAct,
    GitLabCI,
    GitLabRun,
    make_ci_project,
)
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REASON = {
    "MLOPS_RETRAIN_REASON": "LiveAccuracyBelowCard firing in mlops-prod: live accuracy 0.71",
    "MLOPS_RETRAIN_ALERT": "LiveAccuracyBelowCard",
    "MLOPS_RETRAIN_VALUES": '[{"labels":{"namespace":"mlops-prod"},"value":"0.71"}]',
    "MLOPS_RETRAIN_SERVING_TAG": "exp-20261201-000000-abcdef0",
    "MLOPS_RETRAIN_GROUP_KEY": '{}:{alertname="LiveAccuracyBelowCard"}',
}


@dataclass
class Runs:
    ws: Workspace
    origin: Origin
    registry_url: str
    first: GitLabRun
    tags_after_first: list[str]
    forgejo: GitLabRun  # Forgejo's retrain next: same data, same model
    tags_after_forgejo: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("retrain-ci")
    ws, origin = make_ci_project(root / "project", root / "origin.git")
    bucket = s3_server.make_bucket()
    variables = {
        "VENV": str(VENV),
        "DVC_REMOTE_URL": f"s3://{bucket}/dvcstore",
        "MLOPS_REGISTRY_URL": f"s3://{bucket}/registry",
        **s3_server.env,
        "TEST_CI_PATHS": FIXTURE_TEST_CI_PATHS,
    }
    ci = GitLabCI(ws.path, root / "gcl-home", variables)
    trigger = {"CI_PIPELINE_SOURCE": "trigger", **REASON}
    first = ci.run(extra=trigger)
    tags_after_first = origin.tags()

    act = ForgejoAct(
        ws.path,
        root / "act-cache",
        variables={
            "DVC_REMOTE_URL": variables["DVC_REMOTE_URL"],
            "AWS_ENDPOINT_URL": s3_server.env["AWS_ENDPOINT_URL"],
            "MLOPS_REGISTRY_URL": variables["MLOPS_REGISTRY_URL"],
            # The stand-in artifact action copies directories only; the summary is in the log.
            "MLOPS_NO_ARTIFACTS": "1",
        },
        secrets={k: v for k, v in s3_server.env.items() if k.startswith("AWS_") and "KEY" in k},
        env={"VENV": str(VENV), "AWS_DEFAULT_REGION": "us-east-1"},
    )
    event = root / "dispatch.json"
    inputs = {k.removeprefix("MLOPS_RETRAIN_").lower(): v for k, v in REASON.items()}
    inputs["reason"] = "InferenceDriftOverThreshold firing in mlops-prod (Forgejo)"
    event.write_text(json.dumps({"ref": "refs/heads/main", "inputs": inputs}))
    forgejo = act.run("workflow_dispatch", "retrain", event, workflow="retrain.yml")
    yield Runs(
        ws,
        origin,
        variables["MLOPS_REGISTRY_URL"],
        first,
        tags_after_first,
        forgejo,
        origin.tags(),
    )


def test_a_triggered_gitlab_pipeline_publishes_to_staging_only_with_the_reason(
    runs: Runs, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = runs.first
    assert run.proc.returncode == 0, run.output[-6000:]
    # No lint/test (main ran them), no publish/deploy/promote of a main pipeline.
    assert sorted(run.passed()) == ["pipeline", "retrain"], run.output[-4000:]
    (tag,) = runs.tags_after_first
    head = runs.origin.head()
    assert re.fullmatch(rf"retrain-\d{{8}}-\d{{6}}-{head[:7]}", tag)
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url(runs.registry_url)
    staging = registry.alias("staging")
    assert staging.tag == tag and staging.moved_by == "retrain: LiveAccuracyBelowCard"
    assert registry.meta(tag).commit == head
    with pytest.raises(AliasNotFound):
        registry.alias("prod")
    # The reason, where people read it: the tag's message and the job's summary.
    message = git(runs.origin.path, "tag", "-l", "--format=%(contents)", tag)
    assert REASON["MLOPS_RETRAIN_REASON"] in message
    assert f"serving before: {REASON['MLOPS_RETRAIN_SERVING_TAG']}" in message
    log = run.job_log("retrain")
    assert f"**Why:** {REASON['MLOPS_RETRAIN_REASON']}" in log
    assert f"Published `{tag}` and moved `staging` to it" in log


def test_forgejos_retrain_workflow_runs_the_same_lines_from_its_inputs(
    runs: Runs, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = runs.forgejo
    assert run.proc.returncode == 0, run.output[-6000:]
    assert run.act_succeeded("pipeline") and run.act_succeeded("retrain"), run.output[-4000:]
    assert "**Why:** InferenceDriftOverThreshold firing in mlops-prod (Forgejo)" in run.output
    # After GitLab's run, nothing new under the data stage: DVC restores the same model, and
    # the run says so instead of publishing the same bytes under another tag.
    assert "No new model" in run.output
    assert runs.tags_after_forgejo == runs.tags_after_first
    use_s3_env(monkeypatch, s3_server, tmp_path)
    assert len(Registry.from_url(runs.registry_url).alias_history("staging")) == 1
