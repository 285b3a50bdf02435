"""``mlops deploy bump`` against a real bare ``origin``: lands on main's tip, [skip ci], no-op
on a rerun, rebase-and-retry when main moves under it."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from machinery.ci.git import push_target, skip_ci_push_options
from machinery.deploy.gitops import commit_and_push
from machinery.deploy.overlay import ImageRef, read_image, set_image
from tests.ci.gitrepo import commit_file, git, git_env, make_origin

pytestmark = pytest.mark.integration

MLOPS = str(Path(sys.executable).parent / "mlops")
STAGING = "k8s/overlays/staging/kustomization.yaml"
IMAGE = ImageRef("127.0.0.1:5000/group/project/inference", "sha256:" + "cd" * 32)


def _bump(cwd: Path, image: ImageRef, commit: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, "deploy", "bump", "--env", "staging", "--image", str(image), "--commit", commit],
        cwd=cwd,
        env=git_env(**{"IMAGE_NAME": IMAGE.name, **env}),
        capture_output=True,
        text=True,
    )


def test_bump_lands_on_mains_tip_with_skip_ci_and_a_rerun_commits_nothing(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    job = origin.clone(tmp_path / "job")  # the pipeline's checkout: the commit it built
    built = git(job, "rev-parse", "HEAD")
    other = origin.clone(tmp_path / "other")  # main moves on before the job bumps
    commit_file(other, "README.md", "later\n", "someone else's commit")
    git(other, "push", "-q", "origin", "main")
    moved = origin.head()

    done = _bump(job, IMAGE, built)
    assert done.returncode == 0, done.stderr
    assert git(origin.path, "rev-parse", "main~1") == moved  # on top of the newer tip
    subject = origin.log()[0]
    assert "[skip ci]" in subject and "deploy(staging)" in subject
    body = git(origin.path, "log", "-1", "--format=%B", "main")
    assert f"Image-Digest: {IMAGE.digest}" in body and f"Image-Commit: {built}" in body
    changed = git(origin.path, "diff", "--name-only", "main~1", "main").split()
    assert changed == [STAGING]
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(origin.show(STAGING))
    assert read_image(pinned) == IMAGE
    # The job's own checkout is untouched (the edit happened in a throwaway worktree).
    assert git(job, "status", "--porcelain") == "" and git(job, "rev-parse", "HEAD") == built
    assert git(job, "worktree", "list").count("\n") == 0

    head = origin.head()
    again = _bump(job, IMAGE, built)
    assert again.returncode == 0 and "nothing to commit" in again.stdout
    assert origin.head() == head


def test_a_push_race_is_rebased_and_retried(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    job = origin.clone(tmp_path / "job")
    rival = origin.clone(tmp_path / "rival")
    calls = []

    def edit_then_lose_the_race(work: Path) -> bool:
        calls.append(work)
        if len(calls) == 1:  # main moves between our fetch and our push
            commit_file(rival, "README.md", "race\n", "a commit that wins the race")
            git(rival, "push", "-q", "origin", "main")
        return set_image(work / STAGING, IMAGE)

    result = commit_and_push(
        repo=job,
        branch="main",
        paths=[STAGING],
        message="bump [skip ci]",
        edit=edit_then_lose_the_race,
        env=git_env(),
    )
    assert result.attempts == 2 and result.commit == origin.head()
    assert origin.log()[:2] == ["bump [skip ci]", "a commit that wins the race"]
    assert len(calls) == 1  # a clean rebase, not a second edit


def test_a_race_on_the_same_lines_reapplies_the_edit_on_the_new_tip(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    job = origin.clone(tmp_path / "job")
    rival = origin.clone(tmp_path / "rival")
    older = ImageRef(IMAGE.name, "sha256:" + "ee" * 32)
    calls = []

    def edit(work: Path) -> bool:
        calls.append(work)
        if len(calls) == 1:  # another pipeline bumps staging to another image meanwhile
            set_image(rival / STAGING, older)
            git(rival, "commit", "-q", "-am", "rival bump")
            git(rival, "push", "-q", "origin", "main")
        return set_image(work / STAGING, IMAGE)

    result = commit_and_push(
        repo=job,
        branch="main",
        paths=[STAGING],
        message="bump [skip ci]",
        edit=edit,
        env=git_env(),
    )
    assert result.attempts == 2 and len(calls) == 2
    assert origin.log()[:2] == ["bump [skip ci]", "rival bump"]
    pinned = tmp_path / "k.yaml"
    pinned.write_text(origin.show(STAGING))
    assert read_image(pinned) == IMAGE


def test_the_token_goes_in_a_header_through_the_environment_never_argv() -> None:
    env = {
        "MLOPS_GIT_TOKEN": "s3cret",
        "CI_SERVER_URL": "https://gitlab.example.org",
        "CI_PROJECT_PATH": "group/project",
        "GITLAB_CI": "true",
    }
    url, push_env = push_target(env)
    assert url == "https://gitlab.example.org/group/project.git" and "s3cret" not in url
    header = push_env["GIT_CONFIG_VALUE_0"]
    assert push_env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert base64.b64decode(header.split()[-1]).decode() == "oauth2:s3cret"
    assert skip_ci_push_options(url, push_env) == ["-o", "ci.skip"]
    forgejo = {
        "MLOPS_GIT_TOKEN": "t",
        "GITHUB_SERVER_URL": "https://fj.example.org",
        "GITHUB_REPOSITORY": "o/r",
    }
    assert push_target(forgejo)[0] == "https://fj.example.org/o/r.git"
    assert skip_ci_push_options("https://fj.example.org/o/r.git", forgejo) == []
    assert push_target({})[0] == "origin"  # no token: the runner's own checkout remote


@pytest.mark.parametrize(
    ("image", "env", "says"),
    [
        # Another registry, another repository on ours, a look-alike path: all refused.
        (ImageRef("evil.example.com/x", IMAGE.digest), {}, "evil.example.com/x is not"),
        (ImageRef("127.0.0.1:5000/group/other", IMAGE.digest), {}, "group/other is not"),
        (ImageRef(IMAGE.name + "-evil", IMAGE.digest), {}, "inference-evil is not"),
        # GitLab's own registry when IMAGE_NAME is unset: CI_REGISTRY_IMAGE/inference.
        (IMAGE, {"IMAGE_NAME": "", "CI_REGISTRY_IMAGE": "127.0.0.1:5000/g/p"}, "CI_REGISTRY_IMAGE"),
        # Nothing configured: nothing to compare with, so nothing is deployed.
        (IMAGE, {"IMAGE_NAME": ""}, "set IMAGE_NAME"),
    ],
)
def test_bump_refuses_an_image_from_outside_the_configured_repository(
    tmp_path: Path, image: ImageRef, env: dict[str, str], says: str
) -> None:
    origin = make_origin(tmp_path)
    job = origin.clone(tmp_path / "job")
    head = origin.head()
    done = _bump(job, image, git(job, "rev-parse", "HEAD"), **env)
    assert done.returncode in (2, 3), done.stdout + done.stderr
    assert done.returncode == (2 if says == "set IMAGE_NAME" else 3)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert origin.head() == head and done.stdout == ""
