"""The report as a reviewer opens it: offline, self-contained, with the numbers that matter."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.workspace import Workspace


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.img_alts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("src", "href"):
            if values.get(key):
                self.refs.append(str(values[key]))
        if tag == "img":
            self.img_alts.append(str(values.get("alt")))


@pytest.mark.slow
def test_html_report_is_self_contained_and_shows_the_confusion_matrix(
    reproduced: Workspace,
) -> None:
    html = (reproduced.path / "reports/report.html").read_text()
    assert not re.search(r"https?://", html)
    parser = _Resources()
    parser.feed(html)
    assert parser.refs and all(ref.startswith("data:image/png;base64,") for ref in parser.refs)
    assert "confusion matrix" in parser.img_alts
    accuracy = json.loads((reproduced.path / "eval/metrics.json").read_text())["accuracy"]
    assert f">{accuracy:.4g}<" in html


@pytest.mark.slow
def test_markdown_report_has_metrics_params_and_plots(reproduced: Workspace) -> None:
    md = (reproduced.path / "reports/report.md").read_text()
    assert "| accuracy |" in md and "| f1_macro |" in md
    assert "| estimator | svc |" in md
    assert "| label | precision | recall | f1 | support |" in md
    assert "![confusion matrix](../eval/plots/images/confusion_matrix.png)" in md
    assert "Against" not in md  # no baseline configured by default


@pytest.mark.slow
def test_short_cluster_job_is_flagged(tmp_path: Path, reproduced: Workspace) -> None:
    ws = reproduced.copy_to(tmp_path / "ws")
    slurm = ws.path / "reports/slurm"
    slurm.mkdir(parents=True, exist_ok=True)
    (slurm / "train.json").write_text(
        json.dumps(
            {
                "transport": "ssh",
                "job_id": "17",
                "state": "COMPLETED",
                "run_time_s": 42.0,
                "short_job": True,
            }
        )
    )
    ws.run("mlops", "report")
    md = (ws.path / "reports/report.md").read_text()
    assert "### Compute: stage `train`" in md and "| job id | 17 |" in md
    assert "| run time | 42.0 s |" in md
    assert "under 10 minutes" in md
