"""Run the real ``.gitlab-ci.yml`` with gitlab-ci-local (shell executor) on a small CI project.

The project is a copy of this repository (its Makefile, CI files, machinery) whose ``dvc.yaml``
is the tiny pipeline of ``tests/ci/fixture_stages.py``, pushed to a local bare ``origin``. Jobs
use the test session's venv (``VENV``), so no job builds one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.ci.gitrepo import IDENTITY, REPO, Origin, git
from tests.support.workspace import Workspace, venv_stamp

GCL = REPO / ".local/node-tools/gitlab-ci-local/node_modules/.bin/gitlab-ci-local"
VENV = Path(sys.executable).parent.parent


def fixture_dvc_yaml() -> dict[str, object]:
    report = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    return {
        "stages": {
            "train": {
                "cmd": "mlops offload --check 'python -m tests.ci.fixture_stages check' train"
                " -- python -m tests.ci.fixture_stages train",
                "deps": ["tests/ci/fixture_stages.py", "tests/support/fixture_models.py"],
                "params": ["train"],
                "outs": ["models/model.onnx", "models/model_card.json", "reports/slurm/train.json"],
            },
            "evaluate": {
                "cmd": "python -m tests.ci.fixture_stages evaluate",
                "deps": [
                    "models/model.onnx",
                    "models/model_card.json",
                    "tests/ci/fixture_stages.py",
                ],
                "metrics": ["eval/metrics.json"],
                "plots": [
                    {
                        "eval/plots/confusion.json": {
                            "template": "confusion",
                            "x": "actual",
                            "y": "predicted",
                        }
                    },
                    {
                        "eval/plots/per_class.json": {
                            "template": "bar_horizontal",
                            "x": "f1",
                            "y": "label",
                        }
                    },
                ],
                "outs": ["eval/plots/images"],
            },
            "report": report,
        }
    }


# Independent of params.yaml: the pipeline tests' typo in params must reach the pipeline job.
FIXTURE_PROJECT_TESTS = """\
from pathlib import Path


def test_the_project_has_its_pipeline():
    assert "train" in Path("dvc.yaml").read_text()
"""
# The fixture pipeline's stages live in tests/ci/, not src/: tests/pipeline/test_deps.py (which
# checks src/ stages) is not for this project. The CI variable overrides the Makefile's list.
FIXTURE_TEST_CI_PATHS = "tests/example tests/fork/test_independence.py tests/ci/test_workflows.py"


def check_venv_is_synced() -> None:
    """The jobs share this venv; were its stamp stale, their ``make setup`` would re-sync it and
    re-point its editable install at a job's build dir. ``make test`` syncs it first."""
    if not venv_stamp(VENV).is_file():
        raise AssertionError(f"{VENV} is not synced with the locks: run `make setup` first")


def make_ci_project(dest: Path, origin_path: Path) -> tuple[Workspace, Origin]:
    check_venv_is_synced()
    ws = Workspace.clone(dest)
    (dest / "dvc.lock").unlink(missing_ok=True)
    (dest / "dvc.yaml").write_text(yaml.safe_dump(fixture_dvc_yaml(), sort_keys=False))
    # The template's own report section (params.yaml's report: defaults), not the example's.
    params: dict[str, object] = {
        "train": {"estimator": "logreg"},
        "report": {"headline": "", "directions": {}},
    }
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # On the cluster the login user runs the system Python 3.11 on this session's venv's
    # packages (the venv's own interpreter may live under /root, which that user cannot read);
    # building a venv on the login node is what tests/slurm covers.
    site = sysconfig.get_path("purelib")
    setup = [f'export PYTHONPATH="$PYTHONPATH:{site}"', 'python() { python3 "$@"; }']
    slurm = {
        "env": {"kind": "none", "setup": setup},
        "job": {"cpus": 1, "time": "00:10:00", "mem": "1G"},
    }
    (dest / "slurm.yaml").write_text(yaml.safe_dump(slurm))
    # The CI test job runs the project's tests/example/: this project's own, for its fixture
    # pipeline (the example's would test an example this project does not run).
    shutil.rmtree(dest / "tests" / "example")
    (dest / "tests" / "example").mkdir()
    (dest / "tests" / "example" / "__init__.py").write_text("")
    (dest / "tests" / "example" / "test_fixture_project.py").write_text(FIXTURE_PROJECT_TESTS)
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "CI project: the fixture pipeline")
    git(origin_path.parent, "init", "-q", "--bare", "-b", "main", origin_path.name)
    ws.git("remote", "add", "origin", str(origin_path))
    ws.git("push", "-q", "origin", "main")
    ws.git("remote", "set-head", "origin", "main")
    return ws, Origin(origin_path)


@dataclass
class GitLabRun:
    proc: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def act_succeeded(self, job: str) -> bool:
        """act pads job names to the longest one: ``[ci/comment ] 🏁  Job succeeded``."""
        return (
            re.search(rf"^\[[\w-]+/{re.escape(job)} *\] 🏁  Job succeeded", self.output, flags=re.M)
            is not None
        )

    def passed(self) -> list[str]:
        """Jobs that passed (gitlab-ci-local may add coverage: `` PASS  test 100% coverage``)."""
        return [
            ln.split("PASS", 1)[1].split()[0] for ln in self.output.splitlines() if " PASS " in ln
        ]

    def job_log(self, job: str) -> str:
        prefix = f"{job} "
        return "\n".join(ln for ln in self.output.splitlines() if ln.startswith(prefix))


@dataclass
class GitLabCI:
    project: Path
    home: Path
    variables: dict[str, str] = field(default_factory=dict)
    runs: int = 0

    def run(
        self,
        *jobs: str,
        merge_request: bool = False,
        extra: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> GitLabRun:
        cmd = [
            str(GCL),
            "--force-shell-executor",
            "--shell-isolation",
            "--no-artifacts-to-source",
            "--no-color",
            "--home",
            str(self.home),
            "--max-job-name-padding",
            "0",
        ]
        variables = {**self.variables, **(extra or {})}
        predefined = [
            "CI_SERVER_URL",
            "CI_API_V4_URL",
            "CI_PROJECT_ID",
            "CI_PROJECT_PATH",
            "GITLAB_CI",
        ]
        if merge_request:
            variables.update(CI_PIPELINE_SOURCE="merge_request_event", CI_MERGE_REQUEST_IID="42")
            cmd += ["--unset-variable", "CI_COMMIT_BRANCH"]
        if "CI_PIPELINE_SOURCE" in variables:  # a merge request, or a trigger (retrain)
            predefined.append("CI_PIPELINE_SOURCE")
        cmd += ["--ignore-predefined-vars", ",".join(predefined)]
        for key, value in variables.items():
            cmd += ["--variable", f"{key}={value}"]
        cmd += list(jobs)
        # Nothing of this process's own CI, git or cloud settings may leak into the jobs.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CI_", "GITLAB_", "GITHUB_", "MLOPS_", "AWS_", "GIT_", "DVC_"))
        }
        env.update(IDENTITY)
        proc = subprocess.run(
            cmd, cwd=self.project, env=env, capture_output=True, text=True, timeout=timeout
        )
        self.runs += 1  # kept next to the project, for reading a run's job times afterwards
        log = self.project.parent / f"gitlab-ci-local-{self.runs}.log"
        log.write_text(proc.stdout + proc.stderr)
        return GitLabRun(proc)


ACT = Path(sys.executable).parent / "act"


@dataclass
class ForgejoAct:
    """Run the real ``.forgejo/workflows`` with act on the host (no containers): checkout is
    act's copy of the project (with ``.git``), artifact uploads are off (no network here)."""

    project: Path
    cache: Path
    variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def run(self, event: str, job: str, event_json: Path, workflow: str = "ci.yml") -> GitLabRun:
        cmd = [
            str(ACT),
            event,
            "-W",
            f".forgejo/workflows/{workflow}",
            "-j",
            job,
            "-P",
            "docker=-self-hosted",
            "-P",
            "slurm-login=-self-hosted",
            "--action-offline-mode",
            "-e",
            str(event_json),
        ]
        # No network for actions/upload-artifact and download-artifact: local stand-ins keep a
        # run's artifacts in a directory (name -> the uploaded directory's content), enough for
        # the comment job to read the pipeline job's log as it does on Forgejo.
        store = self.cache / "artifacts"
        for action, script in (
            ("upload-artifact", f'mkdir -p "{store}/$N" && cp -r "$P"/. "{store}/$N"/'),
            ("download-artifact", f'mkdir -p "$P" && cp -r "{store}/$N"/. "$P"/'),
        ):
            stand_in = self.cache / action
            stand_in.mkdir(parents=True, exist_ok=True)
            (stand_in / "action.yml").write_text(
                yaml.safe_dump(
                    {
                        "name": f"{action} stand-in",
                        "description": "a local directory instead of the artifact service",
                        "inputs": {"name": {"required": True}, "path": {"required": True}},
                        "runs": {
                            "using": "composite",
                            "steps": [
                                {
                                    "run": script,
                                    "shell": "bash",
                                    "env": {"N": "${{ inputs.name }}", "P": "${{ inputs.path }}"},
                                }
                            ],
                        },
                    }
                )
            )
            cmd += ["--local-repository", f"actions/{action}@v3={stand_in}"]
        for key, value in self.variables.items():
            cmd += ["--var", f"{key}={value}"]
        for key, value in self.secrets.items():
            cmd += ["--secret", f"{key}={value}"]
        for key, value in self.env.items():
            cmd += ["--env", f"{key}={value}"]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CI_", "GITLAB_", "GITHUB_", "MLOPS_", "AWS_", "GIT_", "DVC_"))
        }
        env.update(IDENTITY, XDG_CACHE_HOME=str(self.cache))  # act's work copies go there
        proc = subprocess.run(
            cmd, cwd=self.project, env=env, capture_output=True, text=True, timeout=600
        )
        (self.project.parent / f"act-{event}-{job}.log").write_text(proc.stdout + proc.stderr)
        return GitLabRun(proc)
