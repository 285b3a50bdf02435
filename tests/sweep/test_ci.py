"""A merge request whose params.yaml carries a ``sweep:`` section: the real ``.gitlab-ci.yml``
on gitlab-ci-local runs ONE array for it in the pipeline job (train offloaded to the session's
Slurm over SSH), and the sticky comment on the local forge shows the sweep's table.

The pipeline job also keeps the points (``mlops sweep --push``: ``dvc exp push``): a fresh clone
of the bare ``origin`` pulls and applies the best one with the comment's own command; a push the
forge refuses leaves the table in the comment, which then says the experiments were not kept."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ci.gitrepo import Origin, git
from tests.ci.pipelines import VENV, GitLabCI, GitLabRun, make_ci_project
from tests.slurm.conftest import Cluster
from tests.support.forge_server import GITLAB_READ_TOKEN, ForgeServer
from tests.support.markdown import table_with_header
from tests.support.s3 import S3Server
from tests.support.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def sacct_arrays(cluster: Cluster) -> set[str]:
    out = cluster.slurm(
        "sacct", "-n", "-X", "-P", "-u", cluster.info.user, "-S", "2000-01-01", "-o", "JobID"
    )
    return {ln.split("_")[0] for ln in out.split() if "_" in ln}


@dataclass
class SweepMR:
    ws: Workspace
    origin: Origin
    dvc_remote: str
    run: GitLabRun
    new_arrays: int
    body: str  # the sticky comment


@contextmanager
def sweep_merge_request(
    tmp_path: Path, s3_server: S3Server, cluster: Cluster, extra: dict[str, str] | None = None
) -> Iterator[SweepMR]:
    """The merge request's pipeline and comment jobs; the forge stays up inside the block."""
    ws, origin = make_ci_project(tmp_path / "project", tmp_path / "origin.git")
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
        ws.git("push", "-q", "origin", "sweep")  # the merge request's branch, as on the forge
        dvc_remote = f"s3://{s3_server.make_bucket()}/dvcstore"
        variables = {
            "VENV": str(VENV),
            "DVC_REMOTE_URL": dvc_remote,
            **s3_server.env,
            **cluster.info.env(),
            "MLOPS_SLURM_WORKDIR": cluster.workdir,
            **forge.gitlab_env(),
            "MLOPS_COMMENT_FORGE": "gitlab",
            **(extra or {}),
        }
        ci = GitLabCI(ws.path, tmp_path / "gcl-home", variables)
        before = sacct_arrays(cluster)
        run = ci.run("pipeline", "comment", merge_request=True)
        assert run.proc.returncode == 0, run.output[-6000:]
        notes = [n for n in forge.gitlab_notes() if "mlops-comment" in n["body"]]
        assert len(notes) == 1
        new_arrays = len(sacct_arrays(cluster) - before)
        yield SweepMR(ws, origin, dvc_remote, run, new_arrays, notes[0]["body"])
    finally:
        forge.stop()


def check_table(body: str) -> list[list[str]]:
    assert "### Sweep: 2 points of train, evaluate" in body
    table = table_with_header(body, "", "experiment")
    assert table[0] == ["", "experiment", "train.estimator", "accuracy"]
    assert sorted(r[1] for r in table[1:]) == ["estimator-logreg", "estimator-tree"]
    assert sorted(r[2] for r in table[1:]) == ["logreg", "tree"]
    assert [r[0] for r in table[1:]] == ["★ best", ""]
    accuracy = [float(r[3]) for r in table[1:]]
    assert accuracy == sorted(accuracy, reverse=True)
    return table


def test_a_merge_request_with_a_sweep_section_runs_one_array_and_keeps_the_experiments(
    tmp_path: Path, s3_server: S3Server, cluster: Cluster
) -> None:
    with sweep_merge_request(tmp_path, s3_server, cluster) as mr:
        log = mr.run.job_log("pipeline")
        assert "submitted array" in log and "--array=0-1%2" in log, log[-4000:]
        assert "2/2 done, 0 running, 0 pending, 0 failed" in log
        assert mr.new_arrays == 1  # one array, whatever train ran besides
        assert "2 experiments pushed to origin" in log, log[-4000:]
        table = check_table(mr.body)
    best = table[1][2]
    # The comment's command, verbatim, in a fresh clone of the forge's copy on the MR branch.
    commands = re.findall(r"```bash\n(.*?)\n```", mr.body, flags=re.S)
    assert len(commands) == 1 and commands[0].startswith("dvc exp pull origin refs/exps/")
    ref = commands[0].split()[4]
    assert ref.endswith(f"/estimator-{best}")
    assert commands[0] == f"dvc exp pull origin {ref} && dvc exp apply {ref}"
    refs = git(mr.origin.path, "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    assert sorted(r.rsplit("/", 1)[1] for r in refs) == ["estimator-logreg", "estimator-tree"]
    reviewer = tmp_path / "reviewer"
    mr.origin.clone(reviewer)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DVC_", "MLOPS_", "AWS_"))
    }
    env |= {"PATH": f"{VENV / 'bin'}{os.pathsep}{env['PATH']}", **mr.ws.env, **s3_server.env}
    env["DVC_NO_ANALYTICS"] = "1"

    def sh(cmd: str) -> str:
        done = subprocess.run(
            cmd, shell=True, cwd=reviewer, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
        return done.stdout

    sh("git checkout -q sweep")
    assert yaml.safe_load((reviewer / "params.yaml").read_text())["train"]["estimator"] == "logreg"
    sh(f"dvc remote add --local -d ci {mr.dvc_remote}")
    sh(f"dvc remote modify --local ci endpointurl {s3_server.env['AWS_ENDPOINT_URL']}")
    assert sh("git ls-remote origin 'refs/exps/*'").count("refs/exps/") == 2
    sh(commands[0])
    assert yaml.safe_load((reviewer / "params.yaml").read_text())["train"]["estimator"] == best
    # The outs came from the DVC remote: the swept stages' outs are the ones their dvc.lock
    # names (report is not swept: it renders only, and stays as the branch left it).
    status = sh("dvc status --json train evaluate")
    assert status.strip() in ("{}", ""), status
    # `dvc exp show` in the clone lists both points, pulled by the comment's "every point" line.
    every = re.search(r"Every point: `(dvc exp pull origin --rev [0-9a-f]{40})`", mr.body)
    assert every, mr.body
    sh(every.group(1))
    shown = sh("dvc exp show --json")
    assert "estimator-logreg" in shown and "estimator-tree" in shown


def test_a_push_the_forge_refuses_leaves_the_table_and_says_the_experiments_were_not_kept(
    tmp_path: Path, s3_server: S3Server, cluster: Cluster
) -> None:
    """MLOPS_GIT_TOKEN without a push scope: the forge's smart HTTP answers 403 (so the token
    reached DVC's git client: without it the answer is 401). The job stays green, one line in
    its log says why, and the comment keeps its table but gives no command that cannot work."""
    extra = {"MLOPS_GIT_TOKEN": GITLAB_READ_TOKEN}
    with sweep_merge_request(tmp_path, s3_server, cluster, extra) as mr:
        log = mr.run.job_log("pipeline")
        said = [ln for ln in log.splitlines() if "experiments were not kept" in ln]
        assert len(said) == 1, log[-4000:]
        assert "403" in said[0], said[0]
        check_table(mr.body)
        assert "**The experiments were not kept**" in mr.body
        assert "403" in mr.body.split("**The experiments were not kept**", 1)[1].split("\n")[0]
        assert "dvc exp pull" not in mr.body and "dvc exp apply" not in mr.body
        assert GITLAB_READ_TOKEN not in mr.run.output and GITLAB_READ_TOKEN not in mr.body
    assert git(mr.origin.path, "for-each-ref", "refs/exps/") == ""
