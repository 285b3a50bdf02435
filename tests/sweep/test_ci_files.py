"""Both forges keep a sweep's experiments the same way: their pipeline job runs ``make
pipeline``, whose sweep line pushes (``mlops sweep … --push``), with the token the publish job
pushes with (docs/sweeps.md, "What CI keeps"). The push itself runs in tests/sweep/test_ci.py."""

from __future__ import annotations

import subprocess

import yaml

from tests.ci.gitrepo import REPO


def test_the_pipeline_target_pushes_the_sweeps_experiments() -> None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", "setup", "-o", "ci-remote", "pipeline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    sweeps = [ln for ln in done.stdout.splitlines() if "mlops sweep" in ln]
    assert len(sweeps) == 1 and "--from-params" in sweeps[0] and "--push" in sweeps[0], sweeps


def test_forgejos_pipeline_job_gets_the_token_its_publish_job_pushes_with() -> None:
    jobs = yaml.safe_load((REPO / ".forgejo/workflows/ci.yml").read_text())["jobs"]
    assert [s.get("run") for s in jobs["pipeline"]["steps"] if s.get("run")] == ["make pipeline"]
    token = jobs["publish"]["env"]["MLOPS_GIT_TOKEN"]
    assert jobs["pipeline"]["env"]["MLOPS_GIT_TOKEN"] == token == "${{ secrets.MLOPS_GIT_TOKEN }}"
