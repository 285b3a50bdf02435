"""``mlops offload --check CMD``: a bad param fails here in seconds, before any job is submitted."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import yaml

from tests.slurm.conftest import Cluster, Project

Factory = Callable[..., Project]

# The stage's own check, as an example's ``--check`` does it: read its params, one line if bad.
CHECK = (
    f"{sys.executable} -c \"import sys, yaml; f = yaml.safe_load(open('params.yaml'))['work']"
    "['factor']; sys.exit(None if isinstance(f, int) else"
    " 'error: params.yaml: work.factor: Input should be a valid integer')\""
)


def test_a_bad_param_fails_before_anything_is_submitted(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("mkdir -p out && echo ran > out/x")
    (project.path / "params.yaml").write_text(yaml.safe_dump({"work": {"factor": "bogus"}}))
    started = time.monotonic()
    proc = project.run(cluster.env("local"), options=("--check", CHECK))
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: stage work: params check failed, nothing submitted: params.yaml: work.factor:"
        " Input should be a valid integer"
    ]
    assert took < 10
    assert cluster.jobs_named(f"mlops-{project.identity()}") == []  # no sbatch at all
    assert not cluster.runs.exists() or not any(cluster.runs.glob(f"work-{project.identity()}*"))
    assert not project.report_path.exists()


def test_a_passing_check_lets_the_job_run(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory("mkdir -p out && echo ran > out/x")
    proc = project.run(cluster.env("local"), options=("--check", CHECK))
    assert proc.returncode == 0, proc.stderr
    assert (project.path / "out/x").read_text() == "ran\n"
    report = json.loads(project.report_path.read_text())
    assert report["state"] == "COMPLETED"
    assert cluster.jobs_named(f"mlops-{project.identity()}") == [str(report["job_id"])]
