"""The comment's one-line test summary, from JUnit XML that pytest itself wrote: counts, the
failed tests named (whatever characters their ids hold), and one line for a file it cannot read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from machinery.comment.tests_summary import (
    MAX_NAMED,
    JUnitCounts,
    read_junit,
    summary_line,
    junit_summary,
    with_summary_line,
)
from machinery.errors import UserError
from tests.support.forge_server import ForgeServer
from tests.support.report_project import Mlops, ReportProject

# A fork's tests as pytest collects them: ids with a table pipe, backticks and an HTML tag.
FORK_TESTS = """
import pytest

@pytest.mark.parametrize("x", ["a|b", "`tick`", "<img src=x onerror=alert(1)>"])
def test_odd(x):
    assert x == "never"

def test_ok():
    pass

@pytest.mark.skip(reason="later")
def test_later():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup fails")

def test_setup_error(broken):
    pass
"""
FAILED = [
    "test_fork.test_odd[a|b]",
    "test_fork.test_odd[`tick`]",
    "test_fork.test_odd[<img src=x onerror=alert(1)>]",
    "test_fork.test_setup_error",
]


def run_pytest(tmp_path: Path, source: str) -> Path:
    """pytest's own JUnit XML for ``source`` (a test module), as the CI test job writes it."""
    (tmp_path / "test_fork.py").write_text(source)
    junit = tmp_path / "junit.xml"
    # Not this run's PYTEST_ADDOPTS (e.g. --random-order): the fork's own order is the file's.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert junit.is_file()
    return junit


def inline(md: str) -> tuple[str, list[str]]:
    """(the rendered HTML, the texts of its code spans) as a forge renders the line."""
    parser = MarkdownIt("commonmark")
    tokens = parser.parse(md)
    codes = [
        child.content
        for tok in tokens
        if tok.type == "inline"
        for child in tok.children or []
        if child.type == "code_inline"
    ]
    return str(parser.render(md)), codes


def test_a_failing_run_is_counted_and_each_failed_test_named(tmp_path: Path) -> None:
    run = read_junit(run_pytest(tmp_path, FORK_TESTS))
    assert (run.passed, run.skipped, run.failed) == (1, 1, FAILED)
    line = summary_line(run)
    assert line.startswith("**Tests:** ❌ 4 failed, 1 passed, 1 skipped: ")
    assert "\n" not in line
    html, codes = inline(line)
    assert codes == FAILED  # each name verbatim in its own code span
    assert "<img" not in html and "&lt;img src=x" in html  # shown, never a tag
    assert html.count("<p>") == 1


def test_a_passing_run_gives_the_counts_only(tmp_path: Path) -> None:
    junit = run_pytest(tmp_path, "def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    assert summary_line(read_junit(junit)) == "**Tests:** ✅ 2 passed"


def test_many_failures_stay_one_line() -> None:
    run = JUnitCounts(passed=3, failed=[f"t.test_{n}" for n in range(MAX_NAMED + 4)])
    line = summary_line(run)
    assert line.endswith(" and 4 more") and "\n" not in line
    assert len(inline(line)[1]) == MAX_NAMED


def test_no_test_at_all_is_said() -> None:
    assert summary_line(JUnitCounts()) == "**Tests:** ⚠️ no test ran"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("<testsuites><testsuite>", "not JUnit XML (no element found"),
        ("<html><body>502</body></html>", "not JUnit XML (root element <html>)"),
    ],
)
def test_a_file_that_is_not_junit_is_one_line(tmp_path: Path, content: str, why: str) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(content)
    with pytest.raises(UserError, match=r"^[^\n]*$") as raised:
        read_junit(junit)
    assert str(raised.value).startswith(f"{junit}: {why}")
    line = junit_summary({"MLOPS_JUNIT_XML": str(junit)})
    assert line.startswith("**Tests:** ⚠️ no summary: `") and "\n" not in line


def test_no_junit_file_no_line(tmp_path: Path) -> None:
    assert junit_summary({"MLOPS_JUNIT_XML": str(tmp_path / "absent.xml")}) == ""
    assert with_summary_line("<!-- m -->\nbody\n", "") == "<!-- m -->\nbody\n"


def test_the_line_follows_the_headline() -> None:
    line = "**Tests:** ✅ 2 passed"
    md = with_summary_line("<!-- m -->\n**verdict**\n\n## Report\n", line)
    assert md == "<!-- m -->\n**verdict**\n\n**Tests:** ✅ 2 passed\n\n## Report\n"
    assert with_summary_line("<!-- m -->\n**head**\n", line) == f"<!-- m -->\n**head**\n\n{line}\n"


@pytest.mark.integration
def test_the_posted_comment_carries_the_test_summary_under_its_verdict(
    project: ReportProject,
    forge_server: ForgeServer,
    mlops: Mlops,
    tmp_path: Path,
) -> None:
    junit = run_pytest(tmp_path, FORK_TESTS)
    env = {
        **forge_server.gitlab_env(),
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "",
        "CI_PIPELINE_NAME": "ci",
        "MLOPS_JUNIT_XML": str(junit),
    }
    posted = mlops("comment", env=env)
    assert posted.exit_code == 0, posted.output
    (note,) = forge_server.gitlab_notes()
    lines = note["body"].splitlines()
    assert lines[0] == "<!-- mlops-comment: ci -->"
    assert lines[1].startswith("**accuracy") and lines[2] == ""  # the verdict stays first
    assert lines[3].startswith("**Tests:** ❌ 4 failed, 1 passed, 1 skipped: ")
    assert inline(lines[3])[1] == FAILED
    assert lines[4] == "" and lines[5].startswith("## Model report")


@pytest.mark.integration
def test_the_dry_run_shows_the_summary_and_leaves_it_out_without_a_file(
    project: ReportProject, mlops: Mlops, tmp_path: Path
) -> None:
    junit = run_pytest(tmp_path, "def test_a():\n    pass\n")
    shown = mlops("comment", "--dry-run", env={"MLOPS_JUNIT_XML": str(junit)})
    assert shown.stdout.splitlines()[3] == "**Tests:** ✅ 1 passed"
    plain = mlops("comment", "--dry-run", env={"MLOPS_JUNIT_XML": str(tmp_path / "none.xml")})
    assert "**Tests:**" not in plain.stdout
