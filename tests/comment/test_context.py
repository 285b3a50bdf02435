"""Where the comment goes, read from each forge's CI variables (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machinery.comment.context import CommentError, marker, pull_request, token
from machinery.errors import UserError


def test_gitlab_merge_request_pipeline() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_SERVER_URL": "https://gitlab.example.com/",
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "42",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_JOB_URL": "https://gitlab.example.com/g/p/-/jobs/9",
        "CI_JOB_TOKEN": "job",
    }
    pr = pull_request(env)
    assert (pr.forge, pr.server_url, pr.project, pr.number, pr.target_branch) == (
        "gitlab",
        "https://gitlab.example.com",
        "7",
        42,
        "main",
    )
    assert (
        pr.report_url
        == "https://gitlab.example.com/g/p/-/jobs/9/artifacts/file/reports/report.html"
    )
    assert pull_request(env, "pr/5").number == 5
    assert token(env, "gitlab") == ("job", "CI_JOB_TOKEN")
    assert token({**env, "MLOPS_COMMENT_TOKEN": "pat"}, "gitlab") == ("pat", "MLOPS_COMMENT_TOKEN")


def test_forgejo_pull_request_from_the_event(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12, "base": {"ref": "develop"}}}))
    env = {
        "FORGEJO_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://code.example.org",
        "GITHUB_REPOSITORY": "me/model",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_NUMBER": "3",
        "GITHUB_WORKFLOW": "pipeline",
    }
    pr = pull_request(env)
    assert (pr.forge, pr.project, pr.number, pr.target_branch, pr.workflow) == (
        "forgejo",
        "me/model",
        12,
        "develop",
        "pipeline",
    )
    assert pr.report_url == "https://code.example.org/me/model/actions/runs/3"
    event.write_text("{}")
    assert pull_request({**env, "GITHUB_REF": "refs/pull/9/head"}).number == 9
    with pytest.raises(CommentError, match="no pull request number"):
        pull_request(env)
    with pytest.raises(CommentError, match="MLOPS_COMMENT_TOKEN is not set"):
        token(env, "forgejo")  # no CI_JOB_TOKEN fallback on Forgejo


def test_outside_ci_and_bad_options() -> None:
    with pytest.raises(CommentError, match="not in a GitLab CI or Forgejo Actions job"):
        pull_request({})
    with pytest.raises(UserError, match="--target 'issue/3': expected pr or pr/<number>"):
        pull_request({"GITLAB_CI": "true"}, "issue/3")
    with pytest.raises(UserError, match="MLOPS_COMMENT_FORGE='github'"):
        pull_request({"MLOPS_COMMENT_FORGE": "github"})


def test_the_marker_cannot_close_its_html_comment() -> None:
    assert marker("ci / train") == "<!-- mlops-comment: ci / train -->"
    assert "-->" not in marker("x --> <b>").removesuffix(" -->")
