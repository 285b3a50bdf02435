"""The real ``.gitlab-ci.yml`` run by gitlab-ci-local: a merge-request pipeline (lint, the DVC
pipeline with train offloaded to a real Slurm over SSH, the sticky comment posted to a local
forge), a README-only push (no stage re-runs, no Slurm job, the same comment updated), and a
main pipeline (tag, publish to S3, image build + push, deploy bump to a bare origin) run twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from machinery.ci.tagging import SCHEME
from machinery.deploy.overlay import ImageRef, read_image
from machinery.registry.registry import Registry
from tests.ci.conftest import SlurmCluster
from tests.ci.gitrepo import Origin, git
from tests.ci.pipelines import (
    FIXTURE_TEST_CI_PATHS,
    VENV,
    ForgejoAct,
    GitLabCI,
    GitLabRun,
    make_ci_project,
)
from tests.support.forge_server import FORGEJO_PR, FORGEJO_REPO, FORGEJO_TOKEN, ForgeServer
from tests.support.image_build import ImageStorage
from tests.support.oci_registry import OciRegistry
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class CIProject:
    ws: Workspace
    origin: Origin
    ci: GitLabCI
    forge: ForgeServer
    cluster: SlurmCluster
    bucket: str


@pytest.fixture(scope="module")
def ci_project(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, slurm_cluster: SlurmCluster
) -> Iterator[CIProject]:
    root = tmp_path_factory.mktemp("ci-project")
    ws, origin = make_ci_project(root / "project", root / "origin.git")
    forge = ForgeServer(root / "forge").start()
    bucket = s3_server.make_bucket()
    variables = {
        "VENV": str(VENV),
        "DVC_REMOTE_URL": f"s3://{bucket}/dvcstore",
        "MLOPS_REGISTRY_URL": f"s3://{bucket}/registry",
        **s3_server.env,
        **slurm_cluster.env(),
        **forge.gitlab_env(),
        "MLOPS_COMMENT_FORGE": "gitlab",
        "TEST_CI_PATHS": FIXTURE_TEST_CI_PATHS,
        # mypy's cache is keyed by module and content, so every lint job after the first one
        # takes seconds (real CI caches it the same way: .gitlab-ci.yml `cache:`).
        "MYPY_CACHE_DIR": str(root / "mypy-cache"),
    }
    ci = GitLabCI(ws.path, root / "gcl-home", variables)
    try:
        yield CIProject(ws, origin, ci, forge, slurm_cluster, bucket)
    finally:
        forge.stop()


def _stages_run(log: str) -> list[str]:
    return [ln.split("'")[1] for ln in log.splitlines() if "Running stage '" in ln]


# Each pipeline runs once per module, in a fixture, and records what its test checks: a test
# run alone (or in any order) gets the pipelines it builds on, and none sees another's effects.


@dataclass
class MergeRequestRuns:
    first: GitLabRun
    jobs_before: list[str]
    jobs_after_first: list[str]
    notes_after_first: list[dict[str, Any]]
    second: GitLabRun  # after a README-only push
    jobs_after_second: list[str]
    notes_after_second: list[dict[str, Any]]
    note_puts: int


@pytest.fixture(scope="module")
def merge_request(ci_project: CIProject) -> MergeRequestRuns:
    """Branch ``feature`` (another estimator) through the MR pipeline, then a README push."""
    p = ci_project
    p.ws.git("checkout", "-q", "-b", "feature")
    p.ws.set_param("train.estimator", "tree")
    p.ws.git("commit", "-q", "-am", "try a tree")
    jobs_before = p.cluster.sacct_jobs()
    first = p.ci.run(merge_request=True)
    jobs_after_first, notes_after_first = p.cluster.sacct_jobs(), p.forge.gitlab_notes()

    (p.ws.path / "README.md").write_text((p.ws.path / "README.md").read_text() + "\nmore\n")
    p.ws.git("commit", "-q", "-am", "docs only")
    second = p.ci.run(merge_request=True)
    puts = [r for r in p.forge.api_requests("PUT") if "/notes/" in r["path"]]
    return MergeRequestRuns(
        first=first,
        jobs_before=jobs_before,
        jobs_after_first=jobs_after_first,
        notes_after_first=notes_after_first,
        second=second,
        jobs_after_second=p.cluster.sacct_jobs(),
        notes_after_second=p.forge.gitlab_notes(),
        note_puts=len(puts),
    )


@contextmanager
def on_a_params_typo(p: CIProject) -> Iterator[list[str]]:
    """Branch ``typo`` off main with ``train.estimator: bogus`` committed, checked out for the
    block (which gets the Slurm jobs before it); the workspace's branch is back after."""
    back = p.ws.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    p.ws.git("checkout", "-q", "-B", "typo", "main")
    try:
        p.ws.set_param("train.estimator", "bogus")
        p.ws.git("commit", "-q", "-am", "a typo in params")
        yield p.cluster.sacct_jobs()
    finally:
        p.ws.git("checkout", "-q", back)


def test_a_failed_train_still_comments_and_names_the_stage(ci_project: CIProject) -> None:
    """A typo in params: the params check fails before any Slurm job, the pipeline goes red, and
    the comment job still runs and says which stage failed (not the last green report)."""
    p = ci_project
    with on_a_params_typo(p) as jobs_before:
        run = p.ci.run(merge_request=True)
    assert run.proc.returncode != 0, run.output[-4000:]
    assert "comment" in run.passed() and "pipeline" not in run.passed(), run.output[-6000:]
    assert "params check failed, nothing submitted" in run.job_log("pipeline")
    assert p.cluster.sacct_jobs() == jobs_before  # no cluster job for a typo
    ours = [n for n in p.forge.gitlab_notes() if "mlops-comment" in n["body"]]
    assert len(ours) == 1
    body = ours[0]["body"]
    assert body.splitlines()[1] == "**Pipeline failed at stage `train`**", body
    assert "train.estimator: 'bogus' is not logreg or tree" in body


IMAGE_PATH = "group/project/inference"


@dataclass
class MainRuns:
    head: str  # the commit main built
    jobs_before: list[str]
    first: GitLabRun
    jobs_after_first: list[str]
    tags_after_first: list[str]
    staging_overlay: str
    origin_log: list[str]
    origin_parent: str  # main~1 in origin after the first run
    origin_head: str
    again: GitLabRun  # the same pipeline rerun
    jobs_after_again: list[str]
    tags_after_again: list[str]
    origin_head_after_again: str
    staging_moves: int  # entries in the staging alias's history after the rerun
    promoted: GitLabRun  # the manual promote job
    prod_overlay: str


@pytest.fixture(scope="module")
def main_pipeline(
    ci_project: CIProject,
    merge_request: MergeRequestRuns,
    oci_registry: OciRegistry,
    image_storage: ImageStorage,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> MainRuns:
    """The merge request merged: main's pipeline, its rerun, then the manual promote."""
    p = ci_project
    assert merge_request.second.proc.returncode == 0, "the merge request pipeline failed"
    p.ws.git("checkout", "-q", "main")
    p.ws.git("merge", "-q", "--ff-only", "feature")
    p.ws.git("push", "-q", "origin", "main")
    head = p.ws.git("rev-parse", "HEAD").stdout.strip()
    jobs_before = p.cluster.sacct_jobs()
    image_vars = {
        **{k: v for k, v in image_storage.env().items() if k.startswith(("IMAGE_", "PYTHON_"))},
        "IMAGE_NAME": f"{oci_registry.host}/{IMAGE_PATH}",
        "IMAGE_REGISTRY_INSECURE": "1",
    }

    first = p.ci.run(extra=image_vars)
    jobs_after_first, tags_after_first = p.cluster.sacct_jobs(), p.origin.tags()
    staging = p.origin.show("k8s/overlays/staging/kustomization.yaml")
    origin_log, origin_head = p.origin.log(), p.origin.head()
    origin_parent = git(p.origin.path, "rev-parse", "main~1")

    again = p.ci.run(extra=image_vars)
    jobs_after_again, tags_after_again = p.cluster.sacct_jobs(), p.origin.tags()
    origin_head_after_again = p.origin.head()
    with pytest.MonkeyPatch.context() as env:
        use_s3_env(env, s3_server, tmp_path_factory.mktemp("main-s3"))
        moves = len(Registry.from_url(f"s3://{p.bucket}/registry").alias_history("staging"))

    promoted = p.ci.run("promote")
    return MainRuns(
        head=head,
        jobs_before=jobs_before,
        first=first,
        jobs_after_first=jobs_after_first,
        tags_after_first=tags_after_first,
        staging_overlay=staging,
        origin_log=origin_log,
        origin_parent=origin_parent,
        origin_head=origin_head,
        again=again,
        jobs_after_again=jobs_after_again,
        tags_after_again=tags_after_again,
        origin_head_after_again=origin_head_after_again,
        staging_moves=moves,
        promoted=promoted,
        prod_overlay=p.origin.show("k8s/overlays/prod/kustomization.yaml"),
    )


def test_merge_request_pipeline_then_a_readme_push(merge_request: MergeRequestRuns) -> None:
    mr = merge_request
    assert mr.first.proc.returncode == 0, mr.first.output[-6000:]
    assert sorted(mr.first.passed()) == ["comment", "lint", "pipeline", "test"]
    assert _stages_run(mr.first.job_log("pipeline")) == ["train", "evaluate", "report"]
    assert len(mr.jobs_after_first) == len(mr.jobs_before) + 1  # train, offloaded over SSH
    notes = mr.notes_after_first
    assert len(notes) == 1 and "mlops-comment" in notes[0]["body"]
    # The test job's JUnit, passed as an artifact: the project's test and the template's checks.
    assert re.search(r"^\*\*Tests:\*\* ✅ \d+ passed$", notes[0]["body"], flags=re.M)

    # A README-only push: every stage is restored from the run-cache, no Slurm job, and the
    # same comment is updated in place.
    assert mr.second.proc.returncode == 0, mr.second.output[-6000:]
    assert _stages_run(mr.second.job_log("pipeline")) == []
    assert mr.jobs_after_second == mr.jobs_after_first
    assert [n["id"] for n in mr.notes_after_second] == [notes[0]["id"]]
    assert mr.note_puts >= 1


def test_main_pipeline_tags_publishes_builds_and_bumps_and_a_rerun_changes_nothing(
    ci_project: CIProject,
    main_pipeline: MainRuns,
    oci_registry: OciRegistry,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    p, run = ci_project, main_pipeline
    use_s3_env(monkeypatch, s3_server, tmp_path)  # this process reads the registry too
    head = run.head

    assert run.first.proc.returncode == 0, run.first.output[-6000:]
    assert sorted(run.first.passed()) == ["deploy", "lint", "pipeline", "publish", "test"]
    assert run.jobs_after_first == run.jobs_before  # the MR's run-cache: train not re-run

    # tag: on the commit main built, by the documented scheme, in origin
    tags = run.tags_after_first
    assert len(tags) == 1 and SCHEME.fullmatch(tags[0]) and tags[0].endswith(head[:7])
    tag = tags[0]
    # publish: the registry on S3 has the tag and staging points at it
    registry = Registry.from_url(f"s3://{p.bucket}/registry")
    assert registry.meta(tag).commit == head and registry.alias("staging").tag == tag
    # image + bump: the overlay in origin pins what the registry reports for the commit's tag
    digest = oci_registry.manifest_digest(IMAGE_PATH, head)
    pinned = tmp_path / "staging.yaml"
    pinned.write_text(run.staging_overlay)
    assert read_image(pinned) == ImageRef(f"{oci_registry.host}/{IMAGE_PATH}", digest)
    bump = run.origin_log[0]
    assert "[skip ci]" in bump and "deploy(staging)" in bump
    assert run.origin_parent == head

    # A rerun of the same pipeline: same tag, same bytes, same digest; no commit, no job.
    assert run.again.proc.returncode == 0, run.again.output[-6000:]
    assert run.tags_after_again == [tag] and run.origin_head_after_again == run.origin_head
    assert run.staging_moves == 1
    assert "nothing to commit" in run.again.job_log("deploy")
    assert run.jobs_after_again == run.jobs_before

    # The manual promote job: prod gets staging's tag and image in one step.
    assert run.promoted.proc.returncode == 0, run.promoted.output[-4000:]
    assert registry.alias("prod").tag == tag
    prod = tmp_path / "prod.yaml"
    prod.write_text(run.prod_overlay)
    assert read_image(prod) == ImageRef(f"{oci_registry.host}/{IMAGE_PATH}", digest)


def _forgejo(p: CIProject, root: Path) -> ForgejoAct:
    s3 = {k: v for k, v in p.ci.variables.items() if k.startswith("AWS_")}
    slurm = {k: v for k, v in p.ci.variables.items() if k.startswith("MLOPS_SLURM_")}
    key = Path(slurm.pop("MLOPS_SLURM_SSH_KEY_FILE")).read_text()
    return ForgejoAct(
        p.ws.path,
        root / "act-cache",
        variables={
            "DVC_REMOTE_URL": p.ci.variables["DVC_REMOTE_URL"],
            "AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
            "MLOPS_REGISTRY_URL": p.ci.variables["MLOPS_REGISTRY_URL"],
            **{k: v for k, v in slurm.items() if k != "MLOPS_SLURM_WORKDIR"},
        },
        secrets={
            "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
            "MLOPS_SLURM_SSH_KEY": key,
            "MLOPS_COMMENT_TOKEN": FORGEJO_TOKEN,
        },
        env={
            "VENV": p.ci.variables["VENV"],
            "MYPY_CACHE_DIR": p.ci.variables["MYPY_CACHE_DIR"],
            "TEST_CI_PATHS": FIXTURE_TEST_CI_PATHS,
            "MLOPS_SLURM_WORKDIR": slurm["MLOPS_SLURM_WORKDIR"],
            "AWS_DEFAULT_REGION": s3.get("AWS_DEFAULT_REGION", "us-east-1"),
            # The forge is the local one: act's defaults name github.com, which is never used.
            "GITHUB_SERVER_URL": p.forge.url,
            "GITHUB_REPOSITORY": FORGEJO_REPO,
            "FORGEJO_ACTIONS": "true",
        },
    )


def test_forgejo_a_failed_train_still_comments_and_names_the_stage(
    ci_project: CIProject, tmp_path: Path
) -> None:
    p = ci_project
    act = _forgejo(p, tmp_path)
    event = tmp_path / "pull_request.json"
    pull = {"number": FORGEJO_PR, "base": {"ref": "main"}, "head": {"ref": "typo"}}
    event.write_text(json.dumps({"number": FORGEJO_PR, "pull_request": pull}))
    with on_a_params_typo(p) as jobs_before:
        run = act.run("pull_request", "comment", event)
    assert not run.act_succeeded("pipeline"), run.output[-4000:]
    assert run.act_succeeded("comment"), run.output[-6000:]
    assert p.cluster.sacct_jobs() == jobs_before
    ours = [c for c in p.forge.forgejo_comments() if "mlops-comment" in c["body"]]
    assert len(ours) == 1
    assert ours[0]["body"].splitlines()[1] == "**Pipeline failed at stage `train`**"


def test_forgejo_workflows_run_with_act_for_a_pull_request_and_a_push(
    ci_project: CIProject, main_pipeline: MainRuns, tmp_path: Path
) -> None:
    """The same make lines on Forgejo's definitions: the PR's jobs end in a comment through the
    Forgejo API; on a push to main, publish is a no-op (main's pipeline already tagged and
    published this commit). No stage re-runs: the run-cache has every stage."""
    p = ci_project
    assert main_pipeline.first.proc.returncode == 0, "main's GitLab pipeline failed"
    act = _forgejo(p, tmp_path)
    jobs_before = p.cluster.sacct_jobs()
    event = tmp_path / "pull_request.json"
    event.write_text(
        json.dumps(
            {
                "number": FORGEJO_PR,
                "pull_request": {
                    "number": FORGEJO_PR,
                    "base": {"ref": "main"},
                    "head": {"ref": "feature"},
                },
            }
        )
    )
    pr = act.run("pull_request", "comment", event)
    assert pr.proc.returncode == 0, pr.output[-6000:]
    for job in ("lint", "test", "pipeline", "comment"):
        said = "\n".join(ln for ln in pr.output.splitlines() if f"ci/{job}" in ln)
        assert pr.act_succeeded(job), said[-3000:]
    comments = p.forge.forgejo_comments()
    assert len(comments) == 1 and "mlops-comment" in comments[0]["body"]

    push = tmp_path / "push.json"
    push.write_text(json.dumps({"ref": "refs/heads/main"}))
    tags = p.origin.tags()
    main = act.run("push", "publish", push)
    assert main.proc.returncode == 0, main.output[-6000:]
    assert main.act_succeeded("publish"), main.output[-3000:]
    assert p.origin.tags() == tags
    assert p.cluster.sacct_jobs() == jobs_before
