"""A pipeline that did not pass: the comment job runs anyway and replaces the last green report
with what failed, the log's tail and where the log is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.forge_server import ForgeServer
from tests.support.markdown import html, raw_html
from tests.support.report_project import Mlops, ReportProject

MARKER = "<!-- mlops-comment: ci -->"
PIPELINE_URL = "https://gitlab.example.com/group/project/-/pipelines/77"
DVC_FAILED = [
    "Running stage 'train':",
    "> mlops offload --check 'python -m example.train --check' train -- python -m example.train",
    "error: stage train: params check failed, nothing submitted: params.yaml: train.estimator:"
    " Input should be 'svc', 'logreg' or 'random_forest'",
    "ERROR: failed to reproduce 'train': failed to run: mlops offload …, exited with 2",
]


def _log(tmp_path: Path, lines: list[str]) -> Path:
    log = tmp_path / "pipeline.log"
    log.write_text("\n".join(lines) + "\n")
    return log


@pytest.mark.integration
def test_a_failed_pipeline_replaces_the_green_comment_with_the_failed_stage(
    project: ReportProject, forge_server: ForgeServer, mlops: Mlops, tmp_path: Path
) -> None:
    env = {
        **forge_server.gitlab_env(),
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "",
        "CI_PIPELINE_NAME": "ci",
        "CI_PIPELINE_URL": PIPELINE_URL,
    }
    green = mlops("comment", "--pipeline-log", str(_log(tmp_path, ["Running stage 'x'"])), env=env)
    assert "comment: created" in green.stdout, green.output
    log = _log(tmp_path, DVC_FAILED)
    assert mlops("comment", "--pipeline-log", str(log), "--outcome", env=env).stdout == "failure\n"
    red = mlops("comment", "--pipeline-log", str(log), env=env)
    assert "comment: updated" in red.stdout, red.output

    notes = forge_server.gitlab_notes()
    assert len(notes) == 1
    body = notes[0]["body"]
    lines = body.splitlines()
    assert lines[:2] == [MARKER, "**Pipeline failed at stage `train`**"]
    assert "Model report" not in body and "accuracy" not in body  # no stale green report
    page = html(body)
    assert f'<a href="{PIPELINE_URL}">the pipeline</a>' in page
    assert "train.estimator: Input should be" in page  # the log's tail, as code
    assert raw_html(body) == [MARKER]


@pytest.mark.integration
@pytest.mark.parametrize(
    "result, log_lines, outcome, headline",
    [
        ("", None, "skipped", "The pipeline did not run: an earlier job failed"),
        ("", ["Stage 'train' didn't change, skipping"], "success", None),
        ("failure", None, "failure", "Pipeline failed"),
        ("cancelled", None, "cancelled", "The pipeline was cancelled"),
        ("success", None, "success", None),
    ],
)
def test_how_the_pipeline_ended_is_read_from_the_log_or_forgejos_needs(
    result: str,
    log_lines: list[str] | None,
    outcome: str,
    headline: str | None,
    project: ReportProject,
    mlops: Mlops,
    tmp_path: Path,
) -> None:
    log = _log(tmp_path, log_lines) if log_lines else tmp_path / "missing.log"
    env = {"MLOPS_PIPELINE_RESULT": result}
    said = mlops("comment", "--pipeline-log", str(log), "--outcome", env=env)
    assert said.stdout == f"{outcome}\n"
    preview = mlops("comment", "--pipeline-log", str(log), "--dry-run", env=env).stdout
    if headline is None:
        assert "## Model report" in preview
    else:
        assert preview.splitlines()[1] == f"**{headline}**"


@pytest.mark.integration
def test_the_log_tail_is_shown_as_code_with_secrets_masked(
    project: ReportProject, mlops: Mlops, tmp_path: Path
) -> None:
    hostile = [
        *DVC_FAILED[:-1],
        "<img src=x onerror=alert(1)> ``` ~~~",
        "token glpat-secret-value-123 leaked by a tool",
        DVC_FAILED[-1],
    ]
    env = {"MLOPS_COMMENT_TOKEN": "glpat-secret-value-123"}
    md = mlops("comment", "--pipeline-log", str(_log(tmp_path, hostile)), "--dry-run", env=env)
    assert "glpat-secret-value-123" not in md.stdout and "token [MASKED] leaked" in md.stdout
    assert raw_html(md.stdout) == ["<!-- mlops-comment: mlops -->"]
    assert "&lt;img src=x onerror=alert(1)&gt; ``` ~~~" in html(md.stdout)
