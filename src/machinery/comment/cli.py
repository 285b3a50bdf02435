"""``mlops comment``: post or update the one report comment on this merge/pull request.

Stands in for CML's ``cml comment update`` (same option names where they overlap).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from machinery.comment.base import MAX_IMAGE_BYTES, Backend, Render
from machinery.comment.baseline import target_revision
from machinery.comment.context import CommentError, PullRequest, marker, pull_request, token
from machinery.comment.outcome import read_outcome, render_outcome
from machinery.comment.tests_summary import junit_summary, with_summary_line
from machinery.errors import UserError, exits_cleanly
from machinery.params import load_section
from machinery.report.diff import against
from machinery.report.directions import ReportParams
from machinery.report.inputs import Image, load_inputs
from machinery.report.model_change import model_change
from machinery.report.render import ReportContext, render
from machinery.sweep.section import sweep_section


def _warn(message: str) -> None:
    print(f"comment: {message}", file=sys.stderr)


def _backend(pr: PullRequest) -> Backend:
    value, var = token(os.environ, pr.forge)
    if pr.forge == "gitlab":
        from machinery.comment.gitlab import GitLabBackend

        return GitLabBackend(pr, value, var)
    from machinery.comment.forgejo import ForgejoBackend

    return ForgejoBackend(pr, value)


def _context(
    pr: PullRequest | None, baseline: str | None, report_url: str, mark: str
) -> ReportContext:
    settings = load_section("report", ReportParams)
    inputs = load_inputs(Path("eval"), Path("models"), Path("reports/slurm"))
    label = baseline or (pr.target_branch if pr else "")
    from machinery.efficiency.render import build

    context = ReportContext(
        inputs=inputs,
        settings=settings,
        baseline=label,
        report_url=report_url,
        marker=mark,
        # Every stage: the local ones' figures are made at run time, the comment at comment time.
        efficiency=build({j.stage: j.record for j in inputs.slurm}, Path.cwd(), measured=True),
    )
    if not label:
        return context
    try:
        rev = baseline or target_revision(label)
        metrics, params = against(rev)
    except UserError as exc:
        # A missing diff must not cost the comment: say why, in the log and in the comment.
        _warn(f"warning: {exc}")
        return replace(context, baseline_error=str(exc))
    change = model_change(rev, inputs.card)
    return replace(context, metrics_diff=metrics, params_diff=params, model_change=change)


def _publishable(images: list[Image]) -> list[Image]:
    kept = []
    for image in images:
        if image.path.stat().st_size > MAX_IMAGE_BYTES:
            _warn(f"warning: {image.path} is over {MAX_IMAGE_BYTES >> 20} MiB; not uploaded")
        else:
            kept.append(image)
    return kept


@exits_cleanly
def comment(
    target: Annotated[
        str, typer.Option(help="pr: this pipeline's merge/pull request; pr/<N>: that one.")
    ] = "pr",
    watermark_title: Annotated[
        str,
        typer.Option(
            help="Names the hidden marker (one comment per PR and per workflow). Default: the"
            " workflow name (GITHUB_WORKFLOW / CI_PIPELINE_NAME), else 'mlops'."
        ),
    ] = "",
    publish: Annotated[
        bool, typer.Option(help="Upload the plots through the forge's own API.")
    ] = True,
    baseline: Annotated[
        str,
        typer.Option(help="Git revision to diff against. Default: the target branch (in CI)."),
    ] = "",
    report_url: Annotated[
        str,
        typer.Option(
            envvar="MLOPS_REPORT_URL",
            help="Link to the HTML report. Default: this CI job's artifact.",
        ),
    ] = "",
    dry_run: Annotated[
        bool, typer.Option(help="Print the Markdown; touch no forge (no token needed).")
    ] = False,
    fail_on_error: Annotated[
        bool, typer.Option(help="Exit 1 when the comment cannot be posted (default: warn only).")
    ] = False,
    pipeline_log: Annotated[
        Optional[Path],  # noqa: UP007 - typer reads the annotation at run time
        typer.Option(
            help="The pipeline job's log (CI: reports/ci/pipeline.log). Missing: that job did not"
            " run; an ERROR line: it failed, and the comment says where instead of a report."
        ),
    ] = None,
    outcome: Annotated[
        bool,
        typer.Option(
            "--outcome",
            help="Print how the pipeline ended (success, failure, skipped, cancelled) and exit.",
        ),
    ] = False,
) -> None:
    """Post the model report as one sticky comment on the merge/pull request, updated in place."""
    ended = read_outcome(os.environ, pipeline_log)
    if outcome:
        typer.echo(ended.result)
        return
    try:
        pr: PullRequest | None = pull_request(os.environ, target)
    except CommentError as exc:
        if not dry_run:
            _fail(str(exc), fail_on_error)
            return
        pr = None  # a local preview: the current workspace, diffed only with --baseline
    title = watermark_title or (pr.workflow if pr else "") or "mlops"
    if not ended.passed:
        body = render_outcome(ended, marker(title), pr.pipeline_url if pr else "")
        _post(pr, dry_run, marker(title), [], lambda urls: body, fail_on_error)
        return
    context = _context(
        pr, baseline or None, report_url or (pr.report_url if pr else ""), marker(title)
    )
    images = _publishable(context.inputs.images) if publish and not dry_run else []
    _post(
        pr,
        dry_run,
        context.marker,
        images,
        # One more section of the one sticky comment when this workspace ran a sweep.
        lambda urls: render(replace(context, image_urls=urls), "report.md.j2")
        + sweep_section(Path.cwd()),
        fail_on_error,
    )


def _post(
    pr: PullRequest | None,
    dry_run: bool,
    mark: str,
    images: list[Image],
    body: Render,
    fail_on_error: bool,
) -> None:
    tests = junit_summary()  # the CI test job's JUnit summary, under the comment's headline

    def with_tests(urls: dict[str, str]) -> str:
        return with_summary_line(body(urls), tests)

    if dry_run:
        typer.echo(with_tests({}), nl=False)
        return
    assert pr is not None
    try:
        posted = _backend(pr).publish(mark, images, with_tests)
    except CommentError as exc:
        _fail(str(exc), fail_on_error)
        return
    typer.echo(f"comment: {posted.action} {posted.where}")


def _fail(message: str, fail_on_error: bool) -> None:
    _warn(f"{message} - comment not posted")
    if fail_on_error:
        raise SystemExit(1)
