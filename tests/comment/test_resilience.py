"""The comment survives what real forges and CI do: two jobs of one MR at once, a proxy's 5xx,
a forge that stays down; and an unchanged plot is not uploaded again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.forge_server import ForgeServer
from tests.support.markdown import image_urls
from tests.support.report_project import IMAGES, Mlops, ReportProject, png

MLOPS = str(Path(sys.executable).parent / "mlops")
MARKER = "<!-- mlops-comment: ci -->"
# The documented bound (docs/comment.md): 6 retries, 0.1 s doubling, 6.3 s of back-off per call.
MAX_RETRIES = 6
BOUND_S = 6.3


def _gitlab_env(forge: ForgeServer) -> dict[str, str]:
    return {
        **forge.gitlab_env(),
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "",
        "CI_PIPELINE_NAME": "ci",
    }


def _env(forge: ForgeServer, kind: str, tmp_path: Path) -> dict[str, str]:
    if kind == "gitlab":
        return _gitlab_env(forge)
    return forge.forgejo_env(tmp_path / "event.json", target="")


def _marked(forge: ForgeServer, kind: str) -> list[dict[str, object]]:
    found = forge.gitlab_notes() if kind == "gitlab" else forge.forgejo_comments()
    return [c for c in found if str(c["body"]).startswith(MARKER)]


LIST = {"gitlab": "/merge_requests/42/notes", "forgejo": "/issues/5/comments"}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["gitlab", "forgejo"])
def test_two_comment_jobs_at_once_leave_one_comment(
    kind: str, project: ReportProject, forge_server: ForgeServer, tmp_path: Path
) -> None:
    # Both jobs list the comments before either creates one: each finds none and creates.
    forge_server.hold_until(2, LIST[kind], method="GET")
    env = {**os.environ, **_env(forge_server, kind, tmp_path)}
    jobs = [
        subprocess.Popen(
            [MLOPS, "comment", "--fail-on-error"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [job.communicate(timeout=120) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    creates = [r for r in forge_server.api_requests("POST") if r["path"].endswith(LIST[kind])]
    assert len(creates) == 2  # the race did happen
    marked = _marked(forge_server, kind)
    assert len(marked) == 1, marked
    for url in image_urls(str(marked[0]["body"])):
        forge_server.fetch(url)
    # A later run updates that one in place (on Forgejo it also deletes the plots the losing
    # job attached, which the comment does not link).
    again = subprocess.run([MLOPS, "comment"], env=env, capture_output=True, text=True)
    assert "comment: updated" in again.stdout, again.stderr
    assert [c["id"] for c in _marked(forge_server, kind)] == [marked[0]["id"]]
    if kind == "forgejo":
        assert len(forge_server.state()["forgejo_attachments"]) == len(IMAGES)


@pytest.mark.integration
def test_a_duplicate_left_by_an_older_run_is_removed(
    project: ReportProject, forge_server: ForgeServer, mlops: Mlops
) -> None:
    forge_server.seed("gitlab", 1, body=f"{MARKER}\nfirst", user="ci-bot")
    forge_server.seed("gitlab", 1, body=f"{MARKER}\nduplicate", user="ci-bot")
    result = mlops("comment", env=_gitlab_env(forge_server))
    assert "comment: updated" in result.stdout, result.output
    marked = _marked(forge_server, "gitlab")
    assert len(marked) == 1 and "duplicate" not in str(marked[0]["body"])


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["gitlab", "forgejo"])
def test_transient_5xx_answers_are_retried(
    kind: str, project: ReportProject, forge_server: ForgeServer, mlops: Mlops, tmp_path: Path
) -> None:
    forge_server.fail_next(502, times=2, path_contains=LIST[kind], method="GET")
    upload = "/uploads" if kind == "gitlab" else "/assets"
    forge_server.fail_next(503, times=1, path_contains=upload, method="POST")
    forge_server.fail_next(502, times=1, path_contains=LIST[kind], method="POST")
    result = mlops("comment", "--fail-on-error", env=_env(forge_server, kind, tmp_path))
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "comment: created" in result.stdout
    statuses = [r["status"] for r in forge_server.requests()]
    assert statuses.count(502) == 3 and statuses.count(503) == 1
    marked = _marked(forge_server, kind)
    assert len(marked) == 1 and len(image_urls(str(marked[0]["body"]))) == len(IMAGES)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["gitlab", "forgejo"])
def test_a_forge_that_stays_down_is_one_line_within_the_bound(
    kind: str, project: ReportProject, forge_server: ForgeServer, mlops: Mlops, tmp_path: Path
) -> None:
    forge_server.fail_next(503, times=1000, path_contains=LIST[kind])
    started = time.monotonic()
    result = mlops("comment", "--fail-on-error", env=_env(forge_server, kind, tmp_path))
    took = time.monotonic() - started
    assert result.exit_code == 1 and result.stdout == ""
    name = "GitLab" if kind == "gitlab" else "Forgejo"
    line = result.stderr.splitlines()
    assert len(line) == 1 and line[0].startswith(f"comment: {name} answered 503 after 6 retries")
    assert "Traceback" not in result.output
    tries = [r for r in forge_server.requests() if LIST[kind] in r["path"]]
    assert len(tries) == 1 + MAX_RETRIES
    assert BOUND_S <= took < BOUND_S + 10


@pytest.mark.integration
def test_gitlab_uploads_only_plots_whose_bytes_changed(
    project: ReportProject, forge_server: ForgeServer, mlops: Mlops
) -> None:
    env = _gitlab_env(forge_server)

    def uploads() -> int:
        return sum(r["path"].endswith("/uploads") for r in forge_server.requests())

    for _ in range(2):
        assert mlops("comment", env=env).exit_code == 0
    assert uploads() == len(IMAGES)
    (project.path / "eval/plots/images" / IMAGES[1]).write_bytes(png(2))
    assert mlops("comment", env=env).exit_code == 0
    assert uploads() == len(IMAGES) + 1
    body = str(_marked(forge_server, "gitlab")[0]["body"])
    local = {(project.path / "eval/plots/images" / name).read_bytes() for name in IMAGES}
    assert {forge_server.fetch(url.split("#")[0]) for url in image_urls(body)} == local
