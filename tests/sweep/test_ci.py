"""A merge request whose params.yaml carries a ``sweep:`` section: the real ``.gitlab-ci.yml``
on gitlab-ci-local runs ONE array for it in the pipeline job (train offloaded to the session's
Slurm over SSH), and the sticky comment on the local forge shows the sweep's table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.ci.pipelines import VENV, GitLabCI, make_ci_project
from tests.slurm.conftest import Cluster
from tests.support.forge_server import ForgeServer
from tests.support.markdown import table_with_header
from tests.support.s3 import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def sacct_arrays(cluster: Cluster) -> set[str]:
    out = cluster.slurm(
        "sacct", "-n", "-X", "-P", "-u", cluster.info.user, "-S", "2000-01-01", "-o", "JobID"
    )
    return {ln.split("_")[0] for ln in out.split() if "_" in ln}


def test_a_merge_request_with_a_sweep_section_runs_one_array_and_comments_the_table(
    tmp_path: Path, s3_server: S3Server, cluster: Cluster
) -> None:
    ws, _ = make_ci_project(tmp_path / "project", tmp_path / "origin.git")
    forge = ForgeServer(tmp_path / "forge").start()
    try:
        ws.git("checkout", "-q", "-b", "sweep")
        params = yaml.safe_load((ws.path / "params.yaml").read_text())
        params["sweep"] = {
            "stages": ["train"],
            "grid": {"train.estimator": ["logreg", "tree"]},
            "max_parallel": 2,
        }
        (ws.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        ws.git("commit", "-q", "-am", "sweep the estimator")
        variables = {
            "VENV": str(VENV),
            "DVC_REMOTE_URL": f"s3://{s3_server.make_bucket()}/dvcstore",
            **s3_server.env,
            **cluster.info.env(),
            "MLOPS_SLURM_WORKDIR": cluster.workdir,
            **forge.gitlab_env(),
            "MLOPS_COMMENT_FORGE": "gitlab",
        }
        ci = GitLabCI(ws.path, tmp_path / "gcl-home", variables)
        before = sacct_arrays(cluster)
        run = ci.run("pipeline", "comment", merge_request=True)
        assert run.proc.returncode == 0, run.output[-6000:]
        log = run.job_log("pipeline")
        assert "submitted array" in log and "--array=0-1%2" in log, log[-4000:]
        assert "2/2 done, 0 running, 0 pending, 0 failed" in log
        assert len(sacct_arrays(cluster) - before) == 1  # one array, whatever train ran besides
        notes = [n for n in forge.gitlab_notes() if "mlops-comment" in n["body"]]
        assert len(notes) == 1
        body = notes[0]["body"]
        assert "### Sweep: 2 points of train, evaluate" in body
        table = table_with_header(body, "", "experiment")
        assert table[0] == ["", "experiment", "train.estimator", "accuracy"]
        assert sorted(r[1] for r in table[1:]) == ["estimator-logreg", "estimator-tree"]
        assert sorted(r[2] for r in table[1:]) == ["logreg", "tree"]
        assert [r[0] for r in table[1:]] == ["★ best", ""]
        accuracy = [float(r[3]) for r in table[1:]]
        assert accuracy == sorted(accuracy, reverse=True)
    finally:
        forge.stop()
