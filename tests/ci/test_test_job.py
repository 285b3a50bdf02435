"""The ``test`` job of both forges, run by gitlab-ci-local and act on a fork: its own package in
``src/example/`` and its own tests in ``tests/example/``. A failing test turns the job (and the
pipeline) red and skips the pipeline stage; the JUnit file names the test, and so does the
comment's summary built from it; a passing fork is green with the counts and its coverage.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from machinery.comment.tests_summary import read_junit, summary_line
from tests.ci.gitrepo import REPO
from tests.ci.pipelines import (
    FIXTURE_TEST_CI_PATHS,
    VENV,
    ForgejoAct,
    GitLabCI,
    GitLabRun,
    make_ci_project,
)
from tests.support.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The fork's model package, in place of the example (typed and formatted: lint checks it too).
PACKAGE = Path("src") / "example"
FORK_PACKAGE = {
    "__init__.py": '"""A fork\'s model package."""\n',
    "scale.py": '"""What the fork trains with."""\n\n\n'
    "def scale(x: float, k: float) -> float:\n    return x * k\n",
}
PASSING = """\
from example.scale import scale


def test_scale_doubles():
    assert scale(2, 2) == 4
"""
# A test id with a table pipe: the summary must still name it verbatim.
FAILING = """\
import pytest

from example.scale import scale


@pytest.mark.parametrize("k", [2], ids=["k|2"])
def test_scale_triples(k):
    assert scale(1, k) == 3
"""
FAILED_NAME = "tests.example.test_fork_failing.test_scale_triples[k|2]"


@dataclass
class Fork:
    ws: Workspace
    gitlab: GitLabCI
    act: ForgejoAct
    event: Path

    def with_tests(self, **files: str) -> None:
        """The fork's tests/example/ is exactly ``files`` (name -> source), committed."""
        tests = self.ws.path / "tests" / "example"
        shutil.rmtree(tests)
        tests.mkdir()
        (tests / "__init__.py").write_text("")
        for name, source in files.items():
            (tests / f"{name}.py").write_text(source)
        self.ws.git("add", "-A")
        self.ws.git("commit", "-q", "-m", f"tests: {', '.join(files)}")

    def gitlab_artifact(self, rel: str) -> Path:
        return self.ws.path / ".gitlab-ci-local" / "artifacts" / "test" / rel

    def act_junit(self) -> Path:
        """Where act's test job writes its JUnit (act removes its work copy after a job)."""
        return Path(self.act.env["JUNIT_XML"])

    def run_act(self, job: str) -> GitLabRun:
        self.act_junit().unlink(missing_ok=True)
        return self.act.run("pull_request", job, self.event)


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Fork:
    root = tmp_path_factory.mktemp("fork-ci")
    ws, _ = make_ci_project(root / "project", root / "origin.git")
    package = ws.path / PACKAGE
    shutil.rmtree(package)
    package.mkdir()
    for name, source in FORK_PACKAGE.items():
        (package / name).write_text(source)
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "fork: its own model package")
    # The jobs share this session's venv, whose editable install is this checkout's: the job's
    # own src/ goes first, as a runner's `make setup` (pip install -e .) would have it.
    common = {"VENV": str(VENV), "TEST_CI_PATHS": FIXTURE_TEST_CI_PATHS, "PYTHONPATH": "src"}
    event = root / "pull_request.json"
    event.write_text(json.dumps({"number": 5, "pull_request": {"number": 5}}))
    return Fork(
        ws,
        GitLabCI(ws.path, root / "gcl-home", {**common, "MYPY_CACHE_DIR": str(root / "mypy")}),
        ForgejoAct(ws.path, root / "act-cache", env={**common, "JUNIT_XML": str(root / "j.xml")}),
        event,
    )


def _rendered_names(line: str) -> list[str]:
    tokens = MarkdownIt("commonmark").parse(line)
    return [c.content for t in tokens for c in t.children or [] if c.type == "code_inline"]


def _act_failed(run: GitLabRun, job: str) -> bool:
    return re.search(rf"^\[[\w-]+/{job} *\] 🏁  Job failed", run.output, flags=re.M) is not None


def test_a_failing_fork_test_turns_the_merge_request_pipeline_red_and_is_named(
    fork: Fork,
) -> None:
    fork.with_tests(test_fork_passing=PASSING, test_fork_failing=FAILING)

    run = fork.gitlab.run(merge_request=True)
    assert run.proc.returncode != 0, run.output[-4000:]
    assert "lint" in run.passed() and "test" not in run.passed(), run.output[-4000:]
    # The pipeline stage (DVC, Slurm) never started: a red test skips it, as red lint does.
    assert not re.search(r"^pipeline(:login-node)? starting", run.output, flags=re.M)
    assert "make pipeline" not in run.output and "pipeline" not in run.passed()
    assert FAILED_NAME.rsplit(".", 1)[1] in run.job_log("test")

    junit = fork.gitlab_artifact("reports/junit.xml")  # `artifacts: when: always`
    counts = read_junit(junit)
    assert counts.failed == [FAILED_NAME] and counts.passed >= 2
    line = summary_line(counts)
    assert line.startswith("**Tests:** ❌ 1 failed, ")
    assert _rendered_names(line) == [FAILED_NAME]

    forgejo = fork.run_act("pipeline")
    assert forgejo.proc.returncode != 0
    assert _act_failed(forgejo, "test"), forgejo.output[-4000:]
    assert not forgejo.act_succeeded("pipeline") and "make pipeline" not in forgejo.output
    assert read_junit(fork.act_junit()).failed == [FAILED_NAME]


def test_a_passing_fork_is_green_with_its_counts_and_coverage(fork: Fork) -> None:
    fork.with_tests(test_fork_passing=PASSING)

    run = fork.gitlab.run("test", merge_request=True)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert run.passed() == ["test"]
    counts = read_junit(fork.gitlab_artifact("reports/junit.xml"))
    assert counts.failed == [] and counts.passed >= 2
    assert summary_line(counts) == f"**Tests:** ✅ {counts.passed} passed"
    # The `coverage:` regex finds the total (gitlab-ci-local applies it as GitLab does); the
    # Cobertura file names the fork's module.
    log = "\n".join(ln.split(" > ", 1)[-1] for ln in run.job_log("test").splitlines())
    regex = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())["test"]["coverage"]
    found = re.search(regex.strip("/"), log, flags=re.M)
    assert found and found.group(1) == "100%", log[-2000:]
    assert re.search(r" PASS +test 100% coverage", run.output)
    cobertura = fork.gitlab_artifact("reports/coverage.xml").read_text()
    assert f'filename="{PACKAGE / "scale.py"}"' in cobertura  # relative to the project root

    forgejo = fork.run_act("test")
    assert forgejo.proc.returncode == 0, forgejo.output[-4000:]
    assert forgejo.act_succeeded("test")
    assert read_junit(fork.act_junit()).failed == []
