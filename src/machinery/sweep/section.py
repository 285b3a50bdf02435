"""The sweep's section of the report and the PR comment: params → metrics, best first.

Rendered from ``reports/sweep.json`` (written by ``mlops sweep``): one row per completed point
sorted by the primary metric (its direction from params.yaml's ``report.directions``, else
guessed from the name), the best row marked, the failed points with state and reason, and the
array's efficiency E and wall time. Every user-made string goes through the report's escaping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.report.markdown import code, text
from machinery.sweep.record import RECORD, PointResult, SweepRecord, load_record

SECTION_FILE = Path("reports/sweep.md")
BEST = "★ best"


def _num(value: Any) -> str:
    from machinery.report.render import _num as num

    return text(num(value))


def _numeric(values: list[Any]) -> bool:
    """A column of numbers (the points a key does not apply to aside): right-aligned, as the
    rest of the comment's numbers are."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in present
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_section(root: Path, record: SweepRecord) -> str:
    from machinery.sweep.run import ranked

    keys: list[str] = []
    for key in record.grid:
        if any(key in p.params for p in record.points):
            keys.append(key)
    try:
        metric, way, points = ranked(root, record, None)
    except UserError:
        metric, way, points = "", "none", [p for p in record.points if p.ok]
    metrics: list[str] = []
    for p in points:
        metrics += [m for m in p.metrics if m not in metrics]
    n = len(record.points)
    how = (
        f"one Slurm array {code(str(record.job_id))} (`--array=0-{n - 1}%{record.max_parallel}`)"
        if record.job_id
        else f"here, at most {record.max_parallel} at a time"
    )
    if len(record.arrays) > 1:
        how = "Slurm arrays " + ", then ".join(
            f"{code(a['job_id'])} ({code('--array=' + a['array'])})" for a in record.arrays
        )
    lines = [f"### Sweep: {n} points of {text(', '.join(record.stages))}", ""]
    facts = [how]
    if record.wall_s is not None:
        facts.append(f"wall time {_num(round(record.wall_s, 1))} s")
    if record.efficiency is not None:
        facts.append(
            f"E {_num(record.efficiency)} (CPU time used {_num(record.total_cpu_s)} s of"
            f" {_num(record.alloc_cpu_s)} s allocated)"
        )
    if metric:
        better = {"higher": "higher is better", "lower": "lower is better"}.get(way, "")
        facts.append(f"ranked by {code(metric)}" + (f" ({better})" if better else ""))
    lines += [" · ".join(facts), ""]
    rerun = [p for p in record.points if p.resubmits]
    if rerun:
        # A reviewer sees that the results come from more than one array, and which ones.
        tasks = ", ".join(f"{text(p.name)} ({code(str(p.task_id))})" for p in rerun)
        lines += [f"Rerun in a later array (an earlier task did not complete): {tasks}", ""]
    if points:
        header = ["", "experiment", *(text(k) for k in keys), *(text(m) for m in metrics)]
        columns = [[p.params.get(k) for p in points] for k in keys]
        columns += [[p.metrics.get(m) for p in points] for m in metrics]
        delimiter = ["---", "---"] + ["---:" if _numeric(c) else "---" for c in columns]
        lines += [_row(header), _row(delimiter)]
        for i, p in enumerate(points):
            cells = [BEST if i == 0 and metric else "", text(p.name)]
            cells += [_num(p.params[k]) if k in p.params else "–" for k in keys]
            cells += [_num(p.metrics.get(m)) for m in metrics]
            lines.append(_row(cells))
        lines += ["", *_advice(record, points[0] if metric else None), ""]
    else:
        lines += ["No point completed.", ""]
    failed = record.failed
    if failed:
        lines += _failed(failed)
    return "\n".join(lines)


def _advice(record: SweepRecord, best: PointResult | None) -> list[str]:
    """How to use the points: in the workspace that ran the sweep, or, after a CI job pushed
    them (``mlops sweep --push``), from a clone of the project; or that CI could not keep them."""
    kept = record.kept
    if kept and kept.get("error"):
        return [
            "**The experiments were not kept**: pushing them to the project's git remote failed"
            f" ({text(kept['error'])}), so they ended with the CI job. `MLOPS_GIT_TOKEN` must"
            ' be able to push to the project in this pipeline (docs/sweeps.md, "What CI keeps").'
        ]
    if kept and kept.get("refs"):
        remote = kept.get("remote") or "origin"
        ref = best.experiment if best and best.experiment in kept["refs"] else None
        baseline = kept["refs"][0].split("/")
        rev = baseline[2] + baseline[3] if len(baseline) > 4 else ""
        lines = [
            f"The {len(kept['refs'])} experiments are kept on the project's git remote"
            " (`refs/exps/`), their outputs in the DVC remote."
        ]
        if ref:
            lines[0] += " The best point as your workspace, from a clone of the project:"
            lines += ["", "```bash", f"dvc exp pull {remote} {ref} && dvc exp apply {ref}", "```"]
        if rev:
            lines += ["", f"Every point: {code(f'dvc exp pull {remote} --rev {rev}')}."]
        return lines
    if best is not None:
        return [f"`dvc exp apply {best.name}` makes the best point the workspace"]
    return ["`dvc exp show` lists every point"]


def _failed(failed: list[PointResult]) -> list[str]:
    lines = [f"**Failed points ({len(failed)})**", ""]
    header = ["experiment", "params", "state", "reason"]
    lines += [_row(header), _row(["---"] * len(header))]
    for p in failed:
        params = ", ".join(f"{k}={v}" for k, v in p.params.items())
        lines.append(_row([text(p.name), text(params), text(p.state), text(p.reason or "–")]))
    lines.append("")
    for p in failed:
        if not p.log_tail:
            continue
        body = "\n".join(p.log_tail).replace("```", "`\u200b``")
        lines += [
            f"<details><summary>last lines of {text(p.name)}'s log</summary>",
            "",
            "```text",
            body,
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def sweep_section(root: Path) -> str:
    """The section for the PR comment: empty when this workspace ran no sweep."""
    if not (root / RECORD).is_file():
        return ""
    return "\n" + render_section(root, load_record(root))


def write_section(root: Path, record: SweepRecord) -> Path:
    path = root / SECTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_section(root, record))
    return path
