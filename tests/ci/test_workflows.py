"""Both forges' CI definitions: the same make targets per job, each job one or two lines, no
duplicate pipelines, valid for their schemas and for actionlint (shellcheck on run: steps)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from machinery.deploy.bump import bump_message
from machinery.deploy.overlay import ImageRef
from tests.ci.gitrepo import REPO

BIN = Path(sys.executable).parent
GITLAB = REPO / ".gitlab-ci.yml"
FORGEJO = REPO / ".forgejo" / "workflows"
# GitLab job name -> the Forgejo job it is the twin of (GitLab picks the login-node runner by a
# second job with `tags:`, Forgejo by an expression in `runs-on:`).
TWINS = {"pipeline:login-node": "pipeline"}


def gitlab_jobs() -> dict[str, list[str]]:
    doc = yaml.safe_load(GITLAB.read_text())
    jobs: dict[str, list[str]] = {}
    for name, job in doc.items():
        if name.startswith(".") or not isinstance(job, dict) or name in ("workflow", "default"):
            continue
        if "script" not in job and "extends" in job:
            job = {**doc[job["extends"]], **job}
        if "script" in job:
            jobs[TWINS.get(name, name)] = list(job["script"])
    return jobs


def forgejo_jobs() -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for path in sorted(FORGEJO.glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            jobs[name] = [step["run"] for step in job["steps"] if "run" in step]
    return jobs


def test_both_forges_run_the_same_commands_in_the_same_jobs() -> None:
    assert gitlab_jobs() == forgejo_jobs()
    assert set(gitlab_jobs()) == {
        "lint",
        "test",
        "pipeline",
        "comment",
        "publish",
        "deploy",
        "promote",
        "retrain",
    }


def test_every_job_is_one_or_two_make_lines_naming_real_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    declared = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M))
    for name, lines in {**gitlab_jobs(), **forgejo_jobs()}.items():
        assert 1 <= len(lines) <= 2, name
        for line in lines:
            words = line.split()
            assert words[0] == "make" and len(words) >= 2, line
            assert set(words[1:]) <= declared, f"{name}: {line}"


def test_one_pipeline_per_push() -> None:
    gitlab = yaml.safe_load(GITLAB.read_text())
    rules = [r["if"] for r in gitlab["workflow"]["rules"]]
    # merge-request pipelines, default-branch pipelines, nothing else (no branch pipeline for an
    # MR's branch, no tag pipeline); [skip ci] commits start none.
    assert any("merge_request_event" in r and "==" in r for r in rules)
    assert any("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in r for r in rules)
    assert gitlab["workflow"]["rules"][0] == {
        "if": r"$CI_COMMIT_MESSAGE =~ /\[skip ci\]/",
        "when": "never",
    }
    assert len(rules) == 3
    ci = yaml.safe_load((FORGEJO / "ci.yml").read_text())
    on = ci[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"pull_request", "push"}
    assert on["push"]["branches"] == ["main"] and "tags" not in on["push"]
    assert on["push"]["paths-ignore"] == ["k8s/overlays/**"]
    promote = yaml.safe_load((FORGEJO / "promote.yml").read_text())
    assert set(promote[True]) == {"workflow_dispatch"}
    retrain = yaml.safe_load((FORGEJO / "retrain.yml").read_text())
    assert set(retrain[True]) == {"workflow_dispatch"}
    manual = yaml.safe_load(GITLAB.read_text())["promote"]["rules"]
    assert all(rule.get("when") == "manual" for rule in manual)


def test_the_comment_job_runs_after_a_failure_one_per_merge_request_at_a_time() -> None:
    gitlab = yaml.safe_load(GITLAB.read_text())["comment"]
    assert gitlab["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "when": "always"}
    ]
    # The pipeline job's artifacts (its log) come along; either runner setup's job will do. The
    # test job's JUnit too, for the comment's test summary.
    needs = {n["job"]: (n.get("optional", False), n["artifacts"]) for n in gitlab["needs"]}
    assert needs == {
        "pipeline": (True, True),
        "pipeline:login-node": (True, True),
        "test": (False, True),
    }
    assert "$CI_MERGE_REQUEST_IID" in gitlab["resource_group"]
    forgejo = yaml.safe_load((FORGEJO / "ci.yml").read_text())["jobs"]["comment"]
    assert forgejo["if"].startswith("${{ always() && ")
    assert forgejo["needs"] == "pipeline"
    assert forgejo["env"]["MLOPS_PIPELINE_RESULT"] == "${{ needs.pipeline.result }}"
    assert forgejo["concurrency"] == {
        "group": "comment-pr-${{ github.event.pull_request.number }}",
        "cancel-in-progress": False,
    }
    pipeline = yaml.safe_load((FORGEJO / "ci.yml").read_text())["jobs"]["pipeline"]
    upload = next(s for s in pipeline["steps"] if "upload-artifact" in s.get("uses", ""))
    download = next(s for s in forgejo["steps"] if "download-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == download["with"]["name"] and "always()" in upload["if"]


def test_the_bump_commit_carries_the_skip_marker_both_forges_honour() -> None:
    # GitLab: [skip ci] anywhere in the message; Forgejo: its default SKIP_WORKFLOW_STRINGS
    # ("[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]").
    image = ImageRef("127.0.0.1:5000/a/inference", "sha256:" + "0" * 64)
    message = bump_message("staging", image, "c" * 40, "why", "exp-20260101-000000-ccccccc")
    subject = message.splitlines()[0]
    assert "[skip ci]" in subject and len(subject) <= 100


@pytest.mark.integration
def test_gitlab_ci_matches_gitlabs_schema() -> None:
    done = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",
            str(GITLAB),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_forgejo_workflows_pass_the_workflow_schema_and_actionlint() -> None:
    files = [str(p) for p in sorted(FORGEJO.glob("*.yml"))]
    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert shutil.which("shellcheck"), "shellcheck missing: bash .ci/install-system"
    lint = subprocess.run(
        [
            str(BIN / "actionlint"),
            "-config-file",
            str(REPO / ".forgejo/actionlint.yaml"),
            # GitHub.com's runtime deprecations: Forgejo runners keep their own node versions.
            "-ignore",
            'runtime "node20" is deprecated',
            "-ignore",
            "is retired on GitHub.com",
            *files,
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_make_treats_forgejos_empty_variables_as_unset() -> None:
    # Forgejo passes `${{ vars.X }}` of an unset variable as ""; an empty MLOPS_SLURM_TRANSPORT
    # would be an invalid setting and an empty AWS_ENDPOINT_URL a bad endpoint.
    env = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_SLURM_TRANSPORT": "",
        "AWS_ENDPOINT_URL": "",
        "MLOPS_REGISTRY_URL": "s3://b/r",
    }
    probe = 'probe: ; @env | grep -E "^(MLOPS|AWS)_" | sort'
    done = subprocess.run(
        ["make", "--no-print-directory", "--eval", probe, "probe"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["MLOPS_REGISTRY_URL=s3://b/r"]
