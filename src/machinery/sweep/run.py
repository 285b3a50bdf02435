"""A sweep from the command line or params.yaml's ``sweep:`` section, run here or as one array."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from machinery.errors import UserError
from machinery.files import load_yaml
from machinery.sweep import grid as gridmod
from machinery.sweep.record import PointResult, SweepRecord, load_record
from machinery.sweep.stages import SweepStage, shared_deps, sweep_stages

PARAMS = Path("params.yaml")
SECTION = "sweep"
DEFAULT_PARALLEL = 4


class SweepFailed(UserError):
    exit_code = 1


class SweepSection(BaseModel):
    """params.yaml's ``sweep:`` section: what CI's merge-request pipeline sweeps."""

    model_config = ConfigDict(extra="forbid")

    stages: list[str] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(min_length=1)
    max_parallel: int = Field(default=DEFAULT_PARALLEL, ge=1)
    max_points: int = Field(default=gridmod.DEFAULT_MAX_POINTS, ge=1)


def read_section(params: dict[str, Any]) -> SweepSection | None:
    data = params.get(SECTION)
    if data is None:
        return None
    try:
        return SweepSection.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join([SECTION, *(str(p) for p in first["loc"])])
        raise UserError(f"{PARAMS}: {key}: {first['msg']}") from None


def has_section(root: Path) -> bool:
    path = root / PARAMS
    return path.is_file() and load_yaml(path).get(SECTION) is not None


@dataclass
class SweepRequest:
    stages: list[SweepStage]
    names: list[str]
    grid: dict[str, list[Any]]
    points: list[gridmod.Point]
    params: dict[str, Any]
    max_parallel: int

    @classmethod
    def build(
        cls,
        root: Path,
        *,
        stages: list[str],
        options: list[str],
        max_parallel: int | None,
        max_points: int | None,
        from_params: bool,
    ) -> SweepRequest:
        if not (root / PARAMS).is_file():
            raise UserError(f"{PARAMS}: not found (run mlops sweep in the project's root)")
        params = load_yaml(root / PARAMS)
        section = read_section(params)
        if from_params:
            if section is None:
                raise UserError(f"{PARAMS}: no {SECTION}: section (docs/sweeps.md)")
            stages = stages or section.stages
            grid = {str(k): list(v) for k, v in section.grid.items()}
            if any(not v for v in grid.values()) or not grid:
                raise UserError(f"{PARAMS}: {SECTION}.grid: empty (the grid would be empty)")
            max_parallel = max_parallel or section.max_parallel
            max_points = max_points or section.max_points
        else:
            if not stages:
                raise UserError("no stage: mlops sweep STAGE -S KEY=V1,V2 ...")
            grid = gridmod.parse_options(options)
            if max_points is None and section is not None:
                max_points = section.max_points
        base = {k: v for k, v in params.items() if k != SECTION}
        gridmod.check_keys(grid, base, str(PARAMS))
        points = gridmod.expand(grid, base, max_points or gridmod.DEFAULT_MAX_POINTS)
        chosen = sweep_stages(stages, root)
        return cls(chosen, stages, grid, points, params, max_parallel or DEFAULT_PARALLEL)


def run_sweep(
    root: Path, request: SweepRequest, *, transport: str | None, dry_run: bool
) -> SweepRecord | None:
    from machinery.slurm.choice import chosen_transport

    kind = chosen_transport(transport)
    if kind != "none" or dry_run:
        from machinery.slurm.settings import load_settings

        settings = load_settings(**({"transport": transport} if transport else {}))
        kind = settings.transport
    if dry_run:
        from machinery.sweep.array import dry_run_text

        print(dry_run_text(root, request, settings), end="")
        return None
    say(f"{len(request.points)} points, at most {request.max_parallel} at a time ({kind})")
    from machinery.sweep.copies import cache_dir, head, workspace_files

    head(root)
    # A point's copy: the workspace as it is, but never the outs its own stages make.
    made = [Path(o) for s in request.stages for o in s.stage.outs]
    files = [
        f
        for f in workspace_files(root)
        if not f.startswith(EXCLUDE) and not any(Path(f).is_relative_to(m) for m in made)
    ]
    extra = [d for d in shared_deps(request.stages) if d not in files]
    cache = cache_dir(root)
    if kind == "none":
        from machinery.sweep.here import run_here

        metrics = [m for s in request.stages for m in s.metrics]
        results, wall = run_here(
            root,
            request.points,
            request.params,
            [(s.stage.name, s.original) for s in request.stages],
            metrics,
            files,
            extra,
            cache,
            request.max_parallel,
        )
        record = SweepRecord(
            stages=[s.stage.name for s in request.stages],
            transport="none",
            max_parallel=request.max_parallel,
            grid=request.grid,
            points=results,
            wall_s=round(wall, 3),
        )
    else:
        from machinery.sweep.array import ArraySweep

        record = ArraySweep(settings, root, request, files, extra, cache).run()
    record.write(root)
    from machinery.sweep.section import write_section

    write_section(root, record)
    done = sum(p.ok for p in record.points)
    say(f"{done} of {len(record.points)} points saved as DVC experiments (dvc exp show)")
    for point in record.failed:
        say(f"point {point.name}: {point.state}{': ' + point.reason if point.reason else ''}")
        for line in point.log_tail:
            print(f"    {line}", file=sys.stderr)
    return record


# Never copied into a point: the sweep's own record and a killed copy-back's scratch.
EXCLUDE = ("reports/sweep.json", "reports/sweep.md", ".mlops-stage-out-")


def primary_metric(root: Path, points: list[PointResult], metric: str | None) -> tuple[str, str]:
    """The metric to rank by and its direction (report.directions, else guessed by name)."""
    from machinery.report.directions import ReportParams, direction

    params = load_yaml(root / PARAMS) if (root / PARAMS).is_file() else {}
    try:
        report = ReportParams.model_validate(params.get("report") or {})
    except ValidationError:
        report = ReportParams()
    names: list[str] = []
    for p in points:
        names += [k for k, v in p.metrics.items() if _number(v) and k not in names]
    if metric:
        if metric not in names:
            known = ", ".join(names) or "none"
            raise UserError(f"no metric '{metric}' in the sweep's points (metrics: {known})")
        way = direction(metric, report.directions)
        return metric, way if way != "none" else "higher"
    candidates = [report.headline] if report.headline in names else []
    candidates += [n for n in names if direction(n, report.directions) != "none"]
    if not candidates:
        raise UserError("no metric with a known direction: name one (--best METRIC)")
    return candidates[0], direction(candidates[0], report.directions)


def ranked(
    root: Path, record: SweepRecord, metric: str | None
) -> tuple[str, str, list[PointResult]]:
    """The completed points, best first by the primary metric."""
    ok = [p for p in record.points if p.ok]
    name, way = primary_metric(root, ok, metric)
    scored = [p for p in ok if _number(p.metrics.get(name))]
    scored.sort(key=lambda p: float(p.metrics[name]), reverse=(way == "higher"))
    return name, way, scored


def best_point(root: Path, metric: str | None) -> PointResult:
    record = load_record(root)
    _, _, points = ranked(root, record, metric)
    if not points:
        raise UserError("no point of the last sweep completed")
    return points[0]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)
