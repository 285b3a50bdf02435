"""``mlops comment`` against the local forge: one sticky comment, updated in place, plots uploaded
through the forge's API, and one clear line for every way posting can fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.forge_server import (
    FORGEJO_READ_TOKEN,
    GITLAB_JOB_TOKEN,
    GITLAB_READ_TOKEN,
    ForgeServer,
)
from tests.support.markdown import image_urls, table_with_header, tables
from tests.support.report_project import IMAGES, PER_CLASS, Mlops, ReportProject, png

MARKER = "<!-- mlops-comment: ci -->"


def _assert_images_on_forge(body: str, forge: ForgeServer, project: ReportProject) -> None:
    urls = image_urls(body)
    assert len(urls) == len(IMAGES)
    local = {(project.path / "eval/plots/images" / name).read_bytes() for name in IMAGES}
    assert {forge.fetch(url) for url in urls} == local  # absolute, on the forge, the real bytes


@pytest.mark.integration
def test_gitlab_posts_one_note_and_updates_it_with_the_diff_against_the_target(
    project: ReportProject,
    forge_server: ForgeServer,
    mlops: Mlops,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a CI job has it: a shallow clone of the MR branch (no main to diff against until the
    # command fetches it) plus the pipeline's outputs.
    clone = tmp_path / "clone"
    project.run(
        "git", "clone", "-q", "--depth=1", "--branch=feature", f"file://{project.path}", str(clone)
    )
    project.run("cp", "-r", "models", "reports", "eval", str(clone))
    monkeypatch.chdir(clone)
    forge_server.seed("gitlab", 130)  # ours lands on the second page of notes
    env = {**forge_server.gitlab_env(), "CI_PIPELINE_NAME": "ci"}
    # The first push's comment without the diff (saves a pair of dvc runs); the update has it.
    first = mlops("comment", env={**env, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": ""})
    assert first.exit_code == 0, first.output
    assert "comment: created note" in first.stdout
    second = mlops("comment", env=env)
    assert "comment: updated note" in second.stdout

    ours = [n for n in forge_server.gitlab_notes() if MARKER in n["body"]]
    assert len(ours) == 1  # never a second comment
    requests = forge_server.requests()
    assert [r["method"] for r in requests if "/notes" in r["path"] and r["method"] != "GET"] == [
        "POST",
        "PUT",
    ]
    uploads = [r for r in requests if r["path"].endswith("/uploads")]
    assert len(uploads) == len(IMAGES)  # the second push's plots are the same bytes: reused
    assert all(r["form"][0]["field"] == "file" for r in uploads)
    assert all(r["auth"] == "private-token" for r in requests if r["path"].startswith("/api/"))

    body = ours[0]["body"]
    lines = body.splitlines()
    assert lines[0] == MARKER
    assert lines[1] == "**accuracy 0.98 → 0.9844 (+0.0044, better) vs main**"
    diff = table_with_header(body, "file", "metric")
    assert [row[1] for row in diff[1:]] == ["accuracy", "log_loss", "n_test"]
    assert diff[1][4].endswith("🟢") and diff[2][4].endswith("🟢")  # lower log_loss is better
    assert diff[3][4] == "-20"  # n_test has no direction: no colour
    assert table_with_header(body, "label")[1:] == [
        [row["label"], *(f"{row[k]:g}" for k in ("precision", "recall", "f1", "support"))]
        for row in PER_CLASS
    ]
    assert ["job id", "4711"] in table_with_header(body, "field")  # in a collapsed block
    assert "job id 4711 · state COMPLETED · run time 754.0 s · stage efficiency E 86.2 %" in body
    _assert_images_on_forge(body, forge_server, project)


@pytest.mark.integration
def test_forgejo_attaches_plots_to_its_comment_and_keeps_only_the_latest(
    project: ReportProject, forge_server: ForgeServer, mlops: Mlops, tmp_path: Path
) -> None:
    # The diff is the GitLab test's; here the attachments matter.
    env = forge_server.forgejo_env(tmp_path / "event.json", target="")
    forge_server.seed("forgejo", 3, body=f"quoting {MARKER}", user="reviewer")
    for action in ("created", "updated"):
        result = mlops("comment", env=env)
        assert f"comment: {action} http" in result.stdout, result.output

    ours = [c for c in forge_server.forgejo_comments() if c["user"]["login"] == "ci-bot"]
    assert len(ours) == 1
    assert len(ours[0]["assets"]) == len(IMAGES)
    assert len(forge_server.state()["forgejo_attachments"]) == len(IMAGES)
    _assert_images_on_forge(ours[0]["body"], forge_server, project)
    methods = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in forge_server.requests()]
    assert methods.count(("PATCH", str(ours[0]["id"]))) == 2
    assert methods.count(("POST", "assets")) == len(IMAGES)  # the same plots: attached once

    # A new plot replaces its old attachment; the unchanged one stays attached.
    (project.path / "eval/plots/images" / IMAGES[0]).write_bytes(png(3))
    assert "comment: updated" in mlops("comment", env=env).stdout
    ours = [c for c in forge_server.forgejo_comments() if c["user"]["login"] == "ci-bot"]
    assert len(ours[0]["assets"]) == len(IMAGES)
    _assert_images_on_forge(ours[0]["body"], forge_server, project)
    methods = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in forge_server.requests()]
    assert methods.count(("POST", "assets")) == len(IMAGES) + 1
    assert sum(m == "DELETE" for m, _ in methods) == 1
    api = [r for r in forge_server.requests() if r["path"].startswith("/api/")]
    assert all(r["auth"] == "authorization:token" for r in api)


@pytest.mark.integration
def test_each_workflow_keeps_its_own_comment(
    project: ReportProject, forge_server: ForgeServer, mlops: Mlops
) -> None:
    env = {**forge_server.gitlab_env(), "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": ""}
    for title in ("train-cpu", "train-gpu", "train-cpu"):
        assert mlops("comment", "--watermark-title", title, "--no-publish", env=env).exit_code == 0
    bodies = [n["body"] for n in forge_server.gitlab_notes()]
    assert len(bodies) == 2
    assert sorted(b.splitlines()[0] for b in bodies) == [
        "<!-- mlops-comment: train-cpu -->",
        "<!-- mlops-comment: train-gpu -->",
    ]
    assert all(image_urls(b) == [] for b in bodies)  # --no-publish: no image, not a broken one


def _gitlab(forge: ForgeServer, **changes: str | None) -> dict[str, str]:
    env = {**forge.gitlab_env(), "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": ""}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


@pytest.mark.integration
@pytest.mark.parametrize(
    "case, expected",
    [
        ("no token", "MLOPS_COMMENT_TOKEN is not set"),
        ("job token", "GitLab refused CI_JOB_TOKEN for merge-request notes (403): set MLOPS_"),
        ("read-only token", "MLOPS_COMMENT_TOKEN may not write notes on project 7"),
        ("bad token", "MLOPS_COMMENT_TOKEN was rejected (401 Unauthorized)"),
        ("unknown MR", "merge request !999 not found (404): check CI_PROJECT_ID / CI_MERGE_"),
        (
            "unreachable",
            "cannot reach http://127.0.0.1:9 (ConnectionError, after 6 retries over 6.3 s): check",
        ),
        ("forgejo read-only", "MLOPS_COMMENT_TOKEN may not write comments on owner/project #5"),
        ("forgejo bad token", "MLOPS_COMMENT_TOKEN was rejected (401: user does not exist)"),
        (
            "forgejo unreachable",
            "cannot reach http://127.0.0.1:9 (ConnectError, after 6 retries over 6.3 s)",
        ),
        ("not a PR", "CI_MERGE_REQUEST_IID is not set: not a merge/pull request pipeline?"),
        ("client error", "GitLab answered 422: 422 injected by the test"),
        ("forgejo unknown PR", "Forgejo repository owner/project or pull request #999 not found"),
    ],
)
def test_a_failed_comment_is_one_line_and_fails_only_when_asked(
    case: str,
    expected: str,
    project: ReportProject,
    forge_server: ForgeServer,
    mlops: Mlops,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forgejo = forge_server.forgejo_env(tmp_path / "e.json", target="")
    env = {
        "no token": _gitlab(forge_server, CI_JOB_TOKEN=""),
        "job token": _gitlab(forge_server, CI_JOB_TOKEN=GITLAB_JOB_TOKEN),
        "read-only token": _gitlab(forge_server, MLOPS_COMMENT_TOKEN=GITLAB_READ_TOKEN),
        "bad token": _gitlab(forge_server, MLOPS_COMMENT_TOKEN="glpat-revoked"),
        "unknown MR": _gitlab(forge_server, CI_MERGE_REQUEST_IID="999"),
        "unreachable": _gitlab(forge_server, CI_SERVER_URL="http://127.0.0.1:9"),
        "forgejo read-only": {**forgejo, "MLOPS_COMMENT_TOKEN": FORGEJO_READ_TOKEN},
        "forgejo bad token": {**forgejo, "MLOPS_COMMENT_TOKEN": "revoked"},
        "forgejo unreachable": {**forgejo, "GITHUB_SERVER_URL": "http://127.0.0.1:9"},
        "not a PR": _gitlab(forge_server, CI_MERGE_REQUEST_IID=""),
        "client error": _gitlab(forge_server),
        "forgejo unknown PR": {**forgejo, "MLOPS_COMMENT_FORGE": "forgejo"},
    }[case]
    args = ["--target", "pr/999"] if case == "forgejo unknown PR" else []
    if case == "client error":
        forge_server.fail_next(422, times=2, path_contains="/notes")
    if case == "job token":
        env.pop("MLOPS_COMMENT_TOKEN")
    if case == "no token":
        env.pop("MLOPS_COMMENT_TOKEN")
    for key in ("MLOPS_COMMENT_TOKEN", "CI_JOB_TOKEN"):
        monkeypatch.delenv(key, raising=False)

    soft = mlops("comment", *args, env=env)
    assert soft.exit_code == 0  # a comment must not turn a green pipeline red...
    assert soft.stderr.count("\n") == 1 and "Traceback" not in soft.output  # ...but it shows
    assert soft.stderr.startswith("comment: ") and expected in soft.stderr
    assert soft.stderr.rstrip().endswith("- comment not posted")
    hard = mlops("comment", "--fail-on-error", *args, env=env)
    assert hard.exit_code == 1 and hard.stderr == soft.stderr
    assert [n for n in forge_server.gitlab_notes() + forge_server.forgejo_comments()] == []


@pytest.mark.integration
def test_dry_run_outside_ci_previews_the_workspace_without_a_forge(
    project: ReportProject, mlops: Mlops
) -> None:
    plain = mlops("comment", "--dry-run")
    assert plain.exit_code == 0 and plain.stderr == ""
    assert plain.stdout.startswith("<!-- mlops-comment: mlops -->\n**accuracy 0.9844**\n")
    assert "Against" not in plain.stdout and image_urls(plain.stdout) == []
    assert len(table_with_header(plain.stdout, "label")) == 1 + len(PER_CLASS)
    diffed = mlops("comment", "--dry-run", "--baseline", "main")
    assert "**accuracy 0.98 → 0.9844 (+0.0044, better) vs main**" in diffed.stdout
    assert len(tables(diffed.stdout)) == len(tables(plain.stdout)) + 2


@pytest.mark.integration
def test_the_venvs_command_diffs_without_its_bin_on_path(project: ReportProject) -> None:
    # `.venv/bin/mlops comment` from a plain shell: it ran `dvc` from PATH, and without the
    # venv's bin there the user got a FileNotFoundError traceback instead of a comment.
    bare = {k: v for k, v in os.environ.items() if k != "PATH"}
    bare["PATH"] = "/usr/bin:/bin"
    mlops_bin = str(Path(sys.executable).parent / "mlops")
    run = subprocess.run(
        [mlops_bin, "comment", "--dry-run", "--baseline", "main"],
        env=bare,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "**accuracy 0.98 → 0.9844 (+0.0044, better) vs main**" in run.stdout


@pytest.mark.integration
def test_the_installed_command_posts_and_fails_as_a_ci_job_sees_it(
    project: ReportProject, forge_server: ForgeServer
) -> None:
    """The console script in a subprocess, as the CI job runs it: stdout/stderr and exit code."""
    env = {**os.environ, **forge_server.gitlab_env(), "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": ""}
    ok = subprocess.run(["mlops", "comment"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("comment: created note"), ok.stderr
    env["MLOPS_COMMENT_TOKEN"] = "glpat-revoked"
    bad = subprocess.run(
        ["mlops", "comment", "--fail-on-error"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "comment: the token in MLOPS_COMMENT_TOKEN was rejected (401 Unauthorized): set it to a"
        " project access token with scope api, role Reporter or above - comment not posted"
    ]
