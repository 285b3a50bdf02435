"""What a reviewer sees: the comment rendered as a forge renders GFM. The verdict line and the
tables read one diff, and no user-derived string becomes markup."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.markdown import code_spans, html, raw_html, table_with_header, tables
from tests.support.report_project import NEW_METRICS, Mlops, ReportProject

# Our own raw HTML: the hidden marker, the collapsed Slurm table and the collapsed one-sided rows
# of a changed model. Nothing else may pass.
OURS = {
    "<details><summary>All fields</summary>",
    "<details><summary>On one side only</summary>",
    "</details>",
    "<sub>",
    "</sub>",
}
HOSTILE = "<img src=x onerror=alert(1)>"


def _verdict(stdout: str) -> str:
    return stdout.splitlines()[1]


@pytest.mark.integration
def test_an_unchanged_headline_metric_is_called_unchanged_not_new(
    project: ReportProject, mlops: Mlops
) -> None:
    same = mlops("comment", "--dry-run", "--baseline", "HEAD")
    assert same.exit_code == 0, same.output
    assert _verdict(same.stdout) == "**accuracy 0.9844 (unchanged) vs HEAD**"
    assert "No metric differs from `HEAD`." in same.stdout
    assert "No param differs from `HEAD`." in same.stdout

    # Only the headline stays as on main: the verdict says so, the table lists the others only.
    project.write_json("eval/metrics.json", {**NEW_METRICS, "accuracy": 0.98})
    mixed = mlops("comment", "--dry-run", "--baseline", "main")
    assert _verdict(mixed.stdout) == "**accuracy 0.98 (unchanged) vs main**"
    diff = table_with_header(mixed.stdout, "file", "metric")
    assert [row[1] for row in diff[1:]] == ["log_loss", "n_test"]
    assert table_with_header(mixed.stdout, "file", "param")[1:] == [
        ["params.yaml", "train.C", "1", "2"]
    ]


@pytest.mark.integration
def test_no_user_string_becomes_html_or_breaks_a_table_or_code_span(
    project: ReportProject, mlops: Mlops
) -> None:
    # A branch may be named with < > and backticks; the target branch is the diff's baseline.
    branch = "a`b<b>x</b>"
    project.run("git", "branch", branch, "main")
    params = yaml.safe_load((project.path / "params.yaml").read_text())
    params["report"] = {"headline": HOSTILE, "directions": {HOSTILE: "higher", "a|b": "lower"}}
    (project.path / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = {**NEW_METRICS, HOSTILE: 0.5, "p|q `r` *s*": "<b>bold</b>|cell"}
    project.write_json("eval/metrics.json", metrics)
    project.write_json(
        "eval/plots/per_class.json", [{"label": HOSTILE, "f1|x": "<script>x</script>"}]
    )
    project.set_card(
        name="n`<b>x</b>",
        estimator=HOSTILE,
        params={"C": HOSTILE, "a|b": 1},
        library_versions={"<i>lib</i>": "1|2"},
    )
    record_path = project.path / "reports/slurm/train.json"
    record = json.loads(record_path.read_text())
    record_path.unlink()
    project.write_json("reports/slurm/<b>tr`ain.json", {**record, "state": HOSTILE})
    (project.path / "eval/plots/images/<img src=x>.png").write_bytes(b"\x89PNG")

    result = mlops("comment", "--dry-run", "--baseline", branch)
    assert result.exit_code == 0, result.output
    md = result.stdout

    assert set(raw_html(md)) <= OURS | {"<!-- mlops-comment: mlops -->"}
    assert f"{branch}" in code_spans(md)  # `Against <branch>`, whole, as code
    assert "n`<b>x</b>" in code_spans(md)  # the card's name, whole, as code
    assert "<b>tr`ain" in code_spans(md)  # the offloaded stage's name
    # Every table keeps its columns: a hostile value is one cell, shown as written.
    for table in tables(md):
        assert {len(row) for row in table} == {len(table[0])}, table
    values = dict(row for row in table_with_header(md, "metric", "value")[1:])
    assert values[HOSTILE] == "0.5"
    assert values["p|q `r` *s*"] == "<b>bold</b>|cell"
    changed = table_with_header(md, "file", "param")
    assert ["params.yaml", "report.headline", "", HOSTILE] in changed
    # The card's name changed too, so the model did: a row of one side only is folded away.
    once = table_with_header(md, "file", "name")
    assert ["params.yaml", f"report.directions.{HOSTILE}", "–", "higher"] in once
    assert ["eval/metrics.json", HOSTILE, "–", "0.5"] in once
    assert table_with_header(md, "label", "f1|x")[1] == [HOSTILE, "<script>x</script>"]
    assert ["state", HOSTILE] in table_with_header(md, "field", "value")
    assert ["C", HOSTILE] in table_with_header(md, "param", "value")
    assert f"state {HOSTILE}" in html(md).replace("&lt;", "<").replace("&gt;", ">")
