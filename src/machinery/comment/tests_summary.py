"""The PR comment's one-line test summary, read from the JUnit XML the CI ``test`` job leaves.

The ``test`` job (``make test-ci``) writes ``reports/tests/junit.xml``; the comment job receives
it as an artifact. Counted from the ``<testcase>`` elements (not the suites' own totals, which some
producers leave out), so any JUnit producer a fork switches to works the same.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from machinery.errors import UserError
from machinery.report import markdown

JUNIT_VAR = "MLOPS_JUNIT_XML"
DEFAULT_JUNIT = Path("reports/tests/junit.xml")
# One line stays one line: past this many failed tests, the rest are counted, not named.
MAX_NAMED = 10


@dataclass(frozen=True)
class JUnitCounts:
    passed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # failures and errors, by name

    @property
    def total(self) -> int:
        return self.passed + self.skipped + len(self.failed)


def _name(case: ET.Element) -> str:
    classname, name = case.get("classname", ""), case.get("name", "?")
    return f"{classname}.{name}" if classname else name


def read_junit(path: Path) -> JUnitCounts:
    """Passed, skipped and failed tests of a JUnit XML file; UserError (one line) if unreadable."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ET.ParseError as exc:
        raise UserError(f"{path}: not JUnit XML ({exc})") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise UserError(f"{path}: not JUnit XML (root element <{root.tag}>)")
    passed, skipped, failed = 0, 0, []
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed.append(_name(case))
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
    return JUnitCounts(passed=passed, skipped=skipped, failed=failed)


def summary_line(run: JUnitCounts) -> str:
    """``**Tests:** ❌ 1 failed, 30 passed: `name` `` as Markdown, one line."""
    if run.total == 0:
        return "**Tests:** ⚠️ no test ran"
    counts = [f"{len(run.failed)} failed"] if run.failed else []
    counts.append(f"{run.passed} passed")
    if run.skipped:
        counts.append(f"{run.skipped} skipped")
    line = f"**Tests:** {'❌' if run.failed else '✅'} {', '.join(counts)}"
    if run.failed:
        named = ", ".join(markdown.code(name) for name in run.failed[:MAX_NAMED])
        more = len(run.failed) - MAX_NAMED
        line += f": {named}" + (f" and {more} more" if more > 0 else "")
    return line


def junit_summary(env: Mapping[str, str] = os.environ) -> str:
    """The summary of ``$MLOPS_JUNIT_XML`` (default reports/tests/junit.xml); "" when there is no
    such file (no test job ran: a local preview); a line saying why when it cannot be read."""
    path = Path(env.get(JUNIT_VAR) or DEFAULT_JUNIT)
    if not path.exists():
        return ""
    try:
        return summary_line(read_junit(path))
    except UserError as exc:
        return f"**Tests:** ⚠️ no summary: {markdown.code(str(exc))}"


def with_summary_line(body: str, line: str) -> str:
    """``body`` with ``line`` as its second paragraph: under the headline (the hidden marker and
    the verdict, or what failed), above the report."""
    if not line:
        return body
    head, blank, rest = body.partition("\n\n")
    if not blank:
        return f"{body.rstrip()}\n\n{line}\n"
    return f"{head}\n\n{line}\n\n{rest}"
