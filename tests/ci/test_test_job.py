"""The ``test`` job of both forges, run by gitlab-ci-local and act on a fork: its own package in
``src/example/`` and its own tests in ``tests/example/``. A failing test turns the job (and the
pipeline) red and skips the pipeline stage; the JUnit file names the test, and so does the
comment's summary built from it; a passing fork is green with the counts and its coverage.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
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
from tests.support.forge_server import FORGEJO_PR, FORGEJO_REPO, FORGEJO_TOKEN, ForgeServer
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
    forge: ForgeServer

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
        """The JUnit file act's test job uploaded (the artifact stand-in keeps it on disk)."""
        return self.act.cache / "artifacts" / "test-reports" / "junit.xml"

    def run_act(self, job: str) -> GitLabRun:
        self.act_junit().unlink(missing_ok=True)
        return self.act.run("pull_request", job, self.event)


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fork]:
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
    event.write_text(json.dumps({"number": FORGEJO_PR, "pull_request": {"number": FORGEJO_PR}}))
    forge = ForgeServer(root / "forge").start()
    gitlab = {**forge.gitlab_env(), "MLOPS_COMMENT_FORGE": "gitlab", "MYPY_CACHE_DIR": str(root)}
    forgejo = {"GITHUB_SERVER_URL": forge.url, "GITHUB_REPOSITORY": FORGEJO_REPO}
    try:
        yield Fork(
            ws,
            GitLabCI(ws.path, root / "gcl-home", {**common, **gitlab}),
            ForgejoAct(
                ws.path,
                root / "act-cache",
                secrets={"MLOPS_COMMENT_TOKEN": FORGEJO_TOKEN},
                env={**common, **forgejo, "FORGEJO_ACTIONS": "true"},
            ),
            event,
            forge,
        )
    finally:
        forge.stop()


def _rendered_names(line: str) -> list[str]:
    tokens = MarkdownIt("commonmark").parse(line)
    return [c.content for t in tokens for c in t.children or [] if c.type == "code_inline"]


def _assert_says_the_test_failed(body: str, passed: int) -> None:
    lines = body.splitlines()
    assert lines[0].startswith("<!-- mlops-comment: ")
    # What failed, then which tests: no stale model report stands for this push.
    assert lines[1] == "**The pipeline did not run: an earlier job failed**", body[:500]
    assert lines[3].startswith(f"**Tests:** ❌ 1 failed, {passed} passed: "), body[:500]
    assert _rendered_names(lines[3]) == [FAILED_NAME]


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

    junit = fork.gitlab_artifact("reports/tests/junit.xml")  # `artifacts: when: always`
    counts = read_junit(junit)
    assert counts.failed == [FAILED_NAME] and counts.passed >= 2
    # The comment job runs after a red job too (`when: always`). gitlab-ci-local never starts it
    # here: it waits for the `pipeline` need to finish, and a job it did not start never does
    # (GitLab marks it skipped and goes on). So it runs alone, with the test job's artifacts.
    comment = fork.gitlab.run("comment", merge_request=True)
    assert comment.passed() == ["comment"], comment.output[-4000:]
    (note,) = [n for n in fork.forge.gitlab_notes() if "mlops-comment" in n["body"]]
    _assert_says_the_test_failed(note["body"], counts.passed)

    forgejo = fork.run_act("comment")
    assert forgejo.proc.returncode != 0
    assert _act_failed(forgejo, "test"), forgejo.output[-4000:]
    assert not forgejo.act_succeeded("pipeline") and "make pipeline" not in forgejo.output
    assert read_junit(fork.act_junit()).failed == [FAILED_NAME]
    assert forgejo.act_succeeded("comment"), forgejo.output[-4000:]
    (comment,) = fork.forge.forgejo_comments()
    _assert_says_the_test_failed(comment["body"], counts.passed)


def test_a_passing_fork_is_green_with_its_counts_and_coverage(fork: Fork) -> None:
    fork.with_tests(test_fork_passing=PASSING)

    run = fork.gitlab.run("test", merge_request=True)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert run.passed() == ["test"]
    counts = read_junit(fork.gitlab_artifact("reports/tests/junit.xml"))
    assert counts.failed == [] and counts.passed >= 2
    assert summary_line(counts) == f"**Tests:** ✅ {counts.passed} passed"
    # The `coverage:` regex finds the total (gitlab-ci-local applies it as GitLab does); the
    # Cobertura file names the fork's module.
    log = "\n".join(ln.split(" > ", 1)[-1] for ln in run.job_log("test").splitlines())
    regex = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())["test"]["coverage"]
    found = re.search(regex.strip("/"), log, flags=re.M)
    assert found and found.group(1) == "100%", log[-2000:]
    assert re.search(r" PASS +test 100% coverage", run.output)
    cobertura = fork.gitlab_artifact("reports/tests/coverage.xml").read_text()
    assert f'filename="{PACKAGE / "scale.py"}"' in cobertura  # relative to the project root

    forgejo = fork.run_act("test")
    assert forgejo.proc.returncode == 0, forgejo.output[-4000:]
    assert forgejo.act_succeeded("test")
    assert read_junit(fork.act_junit()).failed == []
