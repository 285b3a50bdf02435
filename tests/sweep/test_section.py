"""The sweep's section as a reviewer sees it: rendered by a GFM renderer, checked cell by cell,
in ``reports/sweep.md`` and in the one sticky comment (``mlops comment --dry-run``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from machinery.sweep.record import PointResult, SweepRecord
from machinery.sweep.section import render_section
from tests.support.markdown import (
    alignments,
    code_spans,
    paragraphs,
    raw_html,
    table_with_header,
)
from tests.support.report_project import Mlops, ReportProject

HOSTILE = "<img src=x onerror=alert(1)>|"


def record() -> SweepRecord:
    def ok(i: int, est: str, extra: dict[str, object], acc: float, loss: float) -> PointResult:
        p = PointResult(i, f"estimator-{est}-{i}", {"train.estimator": est, **extra}, "COMPLETED")
        p.metrics = {"accuracy": acc, "log_loss": loss}
        p.experiment = f"refs/exps/aa/bb/{p.name}"
        return p

    values = {"train.estimator": "svc", "train.svc.C": -1}
    failed = PointResult(3, "estimator-svc_svc.C--1", values, "FAILED")
    failed.reason, failed.exit_code = "exit code 1", 1
    failed.log_tail = ["Traceback (most recent call last):", f"ValueError: C {HOSTILE} ```"]
    return SweepRecord(
        stages=["train", "evaluate"],
        transport="ssh",
        max_parallel=2,
        grid={"train.estimator": ["svc", "logreg"], "train.svc.C": [1, 10, -1]},
        points=[
            ok(0, "svc", {"train.svc.C": 1}, 0.91, 0.3),
            ok(1, "svc", {"train.svc.C": 10}, 0.97, 0.2),
            ok(2, "logreg", {}, 0.95, 0.25),
            failed,
        ],
        identity="sweep-0123456789abcdef",
        job_id="812",
        wall_s=42.31,
        alloc_cpu_s=80.0,
        total_cpu_s=61.6,
        efficiency=0.77,
    )


def check_section(md: str) -> None:
    table = table_with_header(md, "", "experiment")
    assert table == [
        ["", "experiment", "train.estimator", "train.svc.C", "accuracy", "log_loss"],
        ["★ best", "estimator-svc-1", "svc", "10", "0.97", "0.2"],
        ["", "estimator-logreg-2", "logreg", "–", "0.95", "0.25"],
        ["", "estimator-svc-0", "svc", "1", "0.91", "0.3"],
    ]
    # Numbers right-aligned (GFM `---:`), as in the rest of the comment: the numeric param
    # (its "–" cells aside) and the metrics; names and the string param left.
    section = md[md.index("### Sweep") :]
    assert alignments(section) == [["", "", "", "right", "right", "right"], ["", "", "", ""]]
    failed = table_with_header(md, "experiment", "params", "state", "reason")
    assert failed[1:] == [
        ["estimator-svc_svc.C--1", "train.estimator=svc, train.svc.C=-1", "FAILED", "exit code 1"]
    ]
    assert "one Slurm array `812` (`--array=0-3%2`)" in md
    assert "wall time 42.3 s" in md
    assert "E 0.77 (CPU time used 61.6 s of 80 s allocated)" in md
    assert "ranked by `accuracy` (higher is better)" in md
    assert "`dvc exp apply estimator-svc-1`" in md
    # The log tail is shown as text: the hostile line never becomes a tag.
    assert not [h for h in raw_html(md) if "<img" in h], raw_html(md)


def test_the_section_renders_params_to_metrics_best_first(tmp_path: Path) -> None:
    check_section(render_section(tmp_path, record()))


def test_a_lower_is_better_metric_ranks_the_other_way(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("report:\n  headline: log_loss\n")
    md = render_section(tmp_path, record())
    rows = table_with_header(md, "", "experiment")[1:]
    assert [r[1] for r in rows] == ["estimator-svc-1", "estimator-logreg-2", "estimator-svc-0"]
    assert "ranked by `log_loss` (lower is better)" in md


def resubmitted() -> SweepRecord:
    """``record()`` after a rerun resubmitted point 1 in a second array."""
    rec = record()
    rec.job_id = "815"
    rec.arrays = [{"job_id": "812", "array": "0-3"}, {"job_id": "815", "array": "1,3"}]
    for p in rec.points:
        p.task_id = f"812_{p.index}"
    rec.points[1].task_id, rec.points[1].resubmits = "815_1", 1
    return rec


def check_resubmitted(md: str) -> None:
    facts, line = paragraphs(md[md.index("### Sweep") :])[:2]
    assert facts.startswith("Slurm arrays 812 (--array=0-3), then 815 (--array=1,3) · wall time")
    assert line == (
        "Rerun in a later array (an earlier task did not complete): estimator-svc-1 (815_1)"
    )
    assert {"812", "815", "--array=0-3", "--array=1,3", "815_1"} <= set(code_spans(md))
    # The tables are as for one array.
    assert table_with_header(md, "", "experiment")[1][:2] == ["★ best", "estimator-svc-1"]


def test_a_resubmitted_array_shows_both_arrays_and_the_rerun_points(tmp_path: Path) -> None:
    rec = resubmitted()
    check_resubmitted(render_section(tmp_path, rec))
    # One array, as before: no list of arrays, no rerun line.
    rec.arrays = rec.arrays[:1]
    rec.points[1].resubmits = 0
    md = render_section(tmp_path, rec)
    assert paragraphs(md)[0].startswith("one Slurm array 815 (--array=0-3%2) · ")
    assert "Rerun" not in md


@pytest.mark.integration
def test_the_pr_comment_gains_the_sweep_section(project: ReportProject, mlops: Mlops) -> None:
    without = mlops("comment", "--dry-run")
    assert without.exit_code == 0, without.output
    assert "### Sweep" not in without.stdout
    record().write(project.path)
    result = mlops("comment", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(without.stdout.rstrip("\n").rsplit("\n", 1)[0][:40])
    check_section(result.stdout)
    resubmitted().write(project.path)
    again = mlops("comment", "--dry-run")
    assert again.exit_code == 0, again.output
    check_resubmitted(again.stdout)


def test_after_a_ci_push_the_section_gives_the_command_that_fetches_and_applies_the_best(
    tmp_path: Path,
) -> None:
    rec = record()
    refs = [p.experiment for p in rec.points if p.ok]
    rec.kept = {"remote": "origin", "refs": refs, "error": ""}
    md = render_section(tmp_path, rec)
    best = "refs/exps/aa/bb/estimator-svc-1"
    assert f"```bash\ndvc exp pull origin {best} && dvc exp apply {best}\n```" in md
    assert "Every point: `dvc exp pull origin --rev aabb`." in md
    assert "The 3 experiments are kept on the project's git remote" in md
    assert "`dvc exp apply estimator-svc-1`" not in md  # a bare name: ambiguous across pushes


def test_a_failed_ci_push_says_the_experiments_were_not_kept_and_gives_no_command(
    tmp_path: Path,
) -> None:
    rec = record()
    rec.kept = {"remote": "origin", "refs": [], "error": f"unexpected http resp 403 {HOSTILE}"}
    md = render_section(tmp_path, rec)
    table_with_header(md, "", "experiment")  # the table is still there
    said = md.split("**The experiments were not kept**", 1)[1].split("\n", 1)[0]
    assert "pushing them to the project's git remote failed (unexpected http resp 403" in said
    assert "dvc exp pull" not in md and "dvc exp apply" not in md
    assert not [h for h in raw_html(md) if "<img" in h], raw_html(md)
