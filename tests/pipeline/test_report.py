"""The report as a reviewer opens it: valid GFM Markdown, a self-contained HTML page, the numbers
that matter and nothing a Python repr wrote. Built from fixture files (tests/support/
report_project.py), never from the example."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from machinery.modelcard import short_commit
from machinery.report.directions import ReportParams, direction, judge
from tests.support.markdown import image_urls, table_with_header, tables
from tests.support import report_project as fixtures
from tests.support.report_project import NEW_METRICS, PER_CLASS, Mlops, ReportProject

# The fixture project and the in-process CLI (shared with tests/comment).
report_project_template = fixtures.report_project_template
project = fixtures.project
mlops = fixtures.mlops

REPO = Path(__file__).resolve().parents[2]
REPRS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\[None")


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.img_alts: list[str] = []
        self.cells: list[tuple[str, str]] = []  # (class, text) of every <td>
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.refs += [str(values[k]) for k in ("src", "href") if values.get(k)]
        if tag == "img":
            self.img_alts.append(str(values.get("alt")))
        if tag == "td":
            self._cell = str(values.get("class") or "")
            self.cells.append((self._cell, ""))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.cells[-1] = (self._cell, self.cells[-1][1] + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


@pytest.mark.integration
def test_markdown_report_is_valid_gfm_without_relative_images_or_reprs(
    project: ReportProject, mlops: Mlops
) -> None:
    result = mlops("report")
    assert result.exit_code == 0, result.output
    md = (project.path / "reports/report.md").read_text()
    # The per-class table has every class as a row (it used to stop after the first one).
    assert table_with_header(md, "label")[1:] == [
        [row["label"], *(f"{row[k]:g}" for k in ("precision", "recall", "f1", "support"))]
        for row in PER_CLASS
    ]
    assert len(table_with_header(md, "metric", "value")) == 1 + len(NEW_METRICS)
    assert all(len(set(map(len, t))) == 1 for t in tables(md))  # no ragged rows
    assert image_urls(md) == []  # no relative path that a PR cannot resolve, no data: URI
    assert "confusion_matrix.png" in md  # the plots are named, and are in report.html
    assert not REPRS.search(md), REPRS.search(md)
    assert "- input `x`: N × 5, float32" in md
    assert ["reattached to a running job", "no"] in table_with_header(md, "field", "value")
    assert "**accuracy 0.9844**" in md and "Against" not in md  # no baseline by default


@pytest.mark.integration
def test_html_report_is_self_contained_and_colours_the_diff_by_direction(
    project: ReportProject, mlops: Mlops
) -> None:
    assert mlops("report", "--baseline", "main").exit_code == 0
    html = (project.path / "reports/report.html").read_text()
    assert not re.search(r"https?://", html)
    parser = _Html()
    parser.feed(html)
    assert parser.refs and all(ref.startswith("data:image/png;base64,") for ref in parser.refs)
    assert "confusion matrix" in parser.img_alts
    changes = {text: cls for cls, text in parser.cells if text.startswith(("+", "-"))}
    assert changes == {"+0.0044": "num better", "-0.04": "num better", "-20": "num "}
    assert not REPRS.search(re.sub(r"<[^>]+>", "", html))
    md = (project.path / "reports/report.md").read_text()
    assert "**accuracy 0.98 → 0.9844 (+0.0044, better) vs main**" in md
    assert table_with_header(md, "file", "param")[1:] == [["params.yaml", "train.C", "1", "2"]]


@pytest.mark.integration
def test_a_model_from_uncommitted_changes_says_so(project: ReportProject, mlops: Mlops) -> None:
    project.set_card(code_commit="0123456789abcdef0123456789abcdef01234567+dirty")
    assert mlops("report").exit_code == 0
    for name in ("report.md", "report.html"):
        text = (project.path / "reports" / name).read_text()
        assert "0123456789ab+dirty" in text and "uncommitted changes" in text


@pytest.mark.integration
def test_short_cluster_job_is_flagged(project: ReportProject, mlops: Mlops) -> None:
    record = json.loads((project.path / "reports/slurm/train.json").read_text())
    project.write_json(
        "reports/slurm/train.json", {**record, "run_time_s": 42.0, "short_job": True}
    )
    assert mlops("report").exit_code == 0
    md = (project.path / "reports/report.md").read_text()
    assert "### Compute: stage `train`" in md and ["run time", "42.0 s"] in table_with_header(
        md, "field", "value"
    )
    assert "under 10 minutes" in md


def test_short_commit_keeps_the_dirty_marker() -> None:
    sha = "a" * 40
    assert short_commit(sha) == "a" * 12
    assert short_commit(sha + "+dirty") == "a" * 12 + "+dirty"
    assert short_commit("unknown") == "unknown"


def test_directions_colour_only_metrics_with_a_meaning() -> None:
    assert [direction(k, {}) for k in ("accuracy", "f1_per_class.3", "log_loss", "n_test")] == [
        "higher",
        "higher",
        "lower",
        "none",
    ]
    assert direction("n_test", {"n_test": "higher"}) == "higher"
    assert (judge(-0.04, "lower"), judge(-0.04, "higher"), judge(-20, "none")) == (
        "better",
        "worse",
        "",
    )


def test_the_report_stage_carries_no_baseline() -> None:
    """A cached report stage must never carry a stale baseline: the param is gone for good."""
    # The repository's own params.yaml is checked by every run of the report stage, which
    # loads its section through ReportParams: that refuses the old key with one line.
    with pytest.raises(ValueError, match="baseline"):
        ReportParams.model_validate({"baseline": "main"})
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    assert "baseline" not in stage["cmd"]


def test_the_report_stage_output_carries_no_clock_time(
    project: ReportProject, mlops: Mlops
) -> None:
    """Same inputs, same bytes: the cached ``report`` stage must reproduce the committed
    ``dvc.lock`` in a fresh clone, so it prints no generation time (a diff or a comment does)."""
    outputs = []
    for _ in range(2):
        assert mlops("report").exit_code == 0
        outputs.append(
            [(project.path / "reports" / n).read_bytes() for n in ("report.md", "report.html")]
        )
    assert outputs[0] == outputs[1]
    assert b"Generated" not in outputs[0][0] and b"Generated" not in outputs[0][1]


@pytest.mark.integration
def test_a_local_runs_record_says_where_its_figures_are(
    project: ReportProject, mlops: Mlops
) -> None:
    note = "ran here, not on a cluster: its run time, CPU and memory are in the stage's log"
    record = json.loads((project.path / "reports/slurm/train.json").read_text())
    project.write_json(
        "reports/slurm/train.json",
        {**record, "transport": "none", "source": "none", "job_id": None, "note": note},
    )
    assert mlops("report").exit_code == 0
    md = (project.path / "reports/report.md").read_text()
    assert ["note", note] in table_with_header(md, "field", "value")
