"""A fork's first merge request: the target branch has another model (the template's), so the
comment says the model changed, shows the new figures without a verdict, and folds the rows of
one side only (the old model's classes, the old estimator's params) into a collapsed note.
Read as a forge renders GFM."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import yaml

from machinery.modelcard import ModelCard, TensorSpec
from machinery.report.model_change import compare
from tests.support.markdown import alignments, html, links, table_with_header, tables
from tests.support.report_project import Mlops, ReportProject

OLD_METRICS = {
    "accuracy": 0.9722,
    "f1_macro": 0.972,
    "f1_per_class": {str(d): 0.97 for d in range(10)},
    "n_test": 360,
}
NEW_METRICS = {"accuracy": 0.9259, "f1_macro": 0.9301, "n_test": 54}
WINE = ["barolo", "grignolino", "barbera"]
REPORT_URL = "https://gitlab.example.org/team/wine/-/jobs/77/artifacts/file/reports/report.html"


def _template_on_head(project: ReportProject) -> None:
    """HEAD holds the template's model (ten digit classes, an SVC's params); the workspace
    holds the fork's (another name, three wine labels, another estimator's params)."""
    project.set_card(name="digits-classifier", labels=[str(d) for d in range(10)])
    project.write_json("eval/metrics.json", OLD_METRICS)
    params = yaml.safe_load((project.path / "params.yaml").read_text())
    params["train"] = {"svc": {"C": 10.0, "gamma": 0.001}}
    params["data"] = {"seed": 0}
    (project.path / "params.yaml").write_text(yaml.safe_dump(params))
    project.run("git", "commit", "-q", "-am", "the template's digits model")
    project.set_card(name="wine-quality-grader", labels=WINE)
    project.write_json("eval/metrics.json", NEW_METRICS)
    params["train"] = {"n_estimators": 60, "learning_rate": 0.1}
    params["data"] = {"seed": 3}
    (project.path / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.integration
def test_first_merge_request_of_a_fork_shows_the_new_model_unjudged(
    project: ReportProject, mlops: Mlops
) -> None:
    _template_on_head(project)
    result = mlops(
        "comment", "--dry-run", "--baseline", "HEAD", env={"MLOPS_REPORT_URL": REPORT_URL}
    )
    assert result.exit_code == 0, result.output
    md = result.stdout

    verdict = md.splitlines()[1]
    assert verdict.startswith("**The model changed against HEAD (name, labels): accuracy 0.9259")
    assert "🟢" not in md and "🔴" not in md and ", worse" not in md and ", better" not in md
    assert "name `digits-classifier` → `wine-quality-grader`" in md
    assert "labels `0, 1, 2, 3, 4, … (10 labels)` → `barolo, grignolino, barbera`" in md

    # The figures both models have, side by side, numbers right-aligned, no change column.
    shared = table_with_header(md, "file", "metric")
    assert shared[0] == ["file", "metric", "HEAD", "this"]
    assert ["eval/metrics.json", "accuracy", "0.9722", "0.9259"] in shared
    assert not any(row[1].startswith("f1_per_class") for row in shared)
    # The old model's ten per-class rows and the old estimator's params: folded away.
    once = table_with_header(md, "file", "name")
    keys = [row[1] for row in once[1:]]
    assert [k for k in keys if k.startswith("f1_per_class.")] == [
        f"f1_per_class.{d}" for d in range(10)
    ]
    assert {"train.svc.C", "train.svc.gamma", "train.n_estimators"} <= set(keys)
    assert ["eval/metrics.json", "f1_per_class.3", "0.97", "–"] in once
    rendered = html(md)
    assert rendered.index("<details><summary>On one side only</summary>") < rendered.index(
        "f1_per_class.0"
    )
    # Params both models have and that changed: a table of their own.
    assert table_with_header(md, "file", "param")[1:] == [["params.yaml", "data.seed", "0", "3"]]

    # Numbers right-aligned wherever a column holds numbers.
    by_header = {tuple(t[0]): a for t, a in zip(tables(md), alignments(md))}
    assert by_header[("metric", "value")] == ["", "right"]
    assert by_header[("file", "metric", "HEAD", "this")] == ["", "", "right", "right"]
    assert by_header[("label", "precision", "recall", "f1", "support")] == [
        "",
        "right",
        "right",
        "right",
        "right",
    ]

    # Not uploaded here (a dry run): each plot links to the HTML report of this CI job.
    plot_links = [href for text, href in links(md) if text == "HTML report"]
    assert plot_links == [REPORT_URL, REPORT_URL]


@pytest.mark.integration
def test_the_html_report_of_a_changed_model_colours_nothing(
    project: ReportProject, mlops: Mlops
) -> None:
    _template_on_head(project)
    result = mlops("report", "--baseline", "HEAD")
    assert result.exit_code == 0, result.output
    page = (project.path / "reports/report.html").read_text()
    assert "<strong>The model changed:</strong> name <code>digits-classifier</code>" in page
    assert 'class="num better"' not in page and 'class="num worse"' not in page
    assert "<td>f1_per_class.0</td>" in page  # one-sided rows are listed, not judged


@pytest.mark.integration
def test_a_retrained_model_keeps_its_verdict(project: ReportProject, mlops: Mlops) -> None:
    # Same card name, task and labels on both sides: a diff with colours, as before.
    project.write_json("eval/metrics.json", {"accuracy": 0.99, "log_loss": 0.2, "n_test": 100})
    result = mlops("comment", "--dry-run", "--baseline", "main")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("**accuracy 0.98 → 0.99 (+0.01, better)")
    assert "The model changed" not in result.stdout and "🟢" in result.stdout


@pytest.mark.integration
def test_without_a_report_url_the_plots_say_where_the_html_report_is(
    project: ReportProject, mlops: Mlops
) -> None:
    result = mlops("comment", "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        "- confusion matrix (`confusion_matrix.png`): in the HTML report, `reports/report.html`"
        in result.stdout
    )
    assert [text for text, _ in links(result.stdout)] == []


def _card(**changes: object) -> ModelCard:
    fields: dict[str, object] = dict(
        task="classification",
        name="m",
        estimator="svc",
        input=TensorSpec(name="x", shape=[None, 4]),
        labels=["a", "b"],
        params={},
        data_version="d",
        code_commit="c",
        library_versions={},
        onnx_sha256="0" * 64,
        created=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    fields.update(changes)
    return ModelCard.model_validate(fields)


def test_what_counts_as_another_model() -> None:
    old = json.loads(_card().model_dump_json())
    assert compare(old, _card(estimator="logreg", params={"C": 2})) is None  # retrained
    assert compare(None, _card()) is None  # nothing to compare with: no claim
    change = compare(old, _card(task="regression", labels=[]))
    assert change is not None and change.fields() == "task, labels"
    # A card from before schema 2 has no task; it was a classifier.
    legacy = {k: v for k, v in old.items() if k != "task"}
    assert compare(legacy, _card()) is None
