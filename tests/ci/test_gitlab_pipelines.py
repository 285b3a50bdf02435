"""The real ``.gitlab-ci.yml`` run by gitlab-ci-local: a merge-request pipeline (lint, the DVC
pipeline with train offloaded to a real Slurm over SSH, the sticky comment posted to a local
forge), a README-only push (no stage re-runs, no Slurm job, the same comment updated), and a
main pipeline (tag, publish to S3, image build + push, deploy bump to a bare origin) run twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.ci.conftest import SlurmCluster
from tests.ci.gitrepo import Origin
from tests.ci.pipelines import VENV, GitLabCI, make_ci_project
from tests.support.forge_server import ForgeServer
from tests.support.s3 import S3Server
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
    }
    ci = GitLabCI(ws.path, root / "gcl-home", variables)
    try:
        yield CIProject(ws, origin, ci, forge, slurm_cluster, bucket)
    finally:
        forge.stop()


def _stages_run(log: str) -> list[str]:
    return [ln.split("'")[1] for ln in log.splitlines() if "Running stage '" in ln]


def test_merge_request_pipeline_then_a_readme_push(ci_project: CIProject) -> None:
    p = ci_project
    p.ws.git("checkout", "-q", "-b", "feature")
    p.ws.set_param("train.estimator", "tree")
    p.ws.git("commit", "-q", "-am", "try a tree")
    jobs_before = p.cluster.sacct_jobs()

    first = p.ci.run(merge_request=True)
    assert first.proc.returncode == 0, first.output[-6000:]
    assert sorted(first.passed()) == ["comment", "lint", "pipeline"]
    assert _stages_run(first.job_log("pipeline")) == ["train", "evaluate", "report"]
    jobs_after_first = p.cluster.sacct_jobs()
    assert len(jobs_after_first) == len(jobs_before) + 1  # train, offloaded over SSH
    notes = p.forge.gitlab_notes()
    assert len(notes) == 1 and "mlops-comment" in notes[0]["body"]

    # A README-only push: every stage is restored from the run-cache, no Slurm job, and the
    # same comment is updated in place.
    (p.ws.path / "README.md").write_text((p.ws.path / "README.md").read_text() + "\nmore\n")
    p.ws.git("commit", "-q", "-am", "docs only")
    second = p.ci.run(merge_request=True)
    assert second.proc.returncode == 0, second.output[-6000:]
    assert _stages_run(second.job_log("pipeline")) == []
    assert p.cluster.sacct_jobs() == jobs_after_first
    notes_after = p.forge.gitlab_notes()
    assert [n["id"] for n in notes_after] == [notes[0]["id"]]
    puts = [r for r in p.forge.api_requests("PUT") if "/notes/" in r["path"]]
    assert len(puts) >= 1
