"""The source paper's Table 1: each stage's E_i, E_i^cpu, p^cpu, E_i^gpu, p^gpu and time, and the
pipeline's E by formula (1), E = Σ p·c·Δt ÷ Σ p·Δt.

A stage contributes two segments of its time Δt: its CPU cores (p^cpu = cores × the CPU
weight, used at c = E^cpu) and its GPUs (p^gpu = GPUs × the GPU weight, used at c = E^gpu).
A figure nobody measured is unknown, never 0: a stage with an unknown figure has no E_i and is
left out of the pipeline's E (the table says which).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from machinery.efficiency.measure import Measurement
from machinery.efficiency.settings import EfficiencySettings
from machinery.slurm.accounting import Segment, cpu_efficiency, stage_efficiency


@dataclass(frozen=True)
class StageRow:
    stage: str
    where: str  # "job 42" (its figures from sacct) or "here" (measured on this machine)
    time_s: float | None
    cpus: int | None
    cpu_eff: float | None
    gpus: int = 0
    gpu_eff: float | None = None  # None with gpus > 0: Slurm did not report it

    def p_cpu(self, weights: EfficiencySettings) -> float | None:
        return None if self.cpus is None else self.cpus * weights.cpu_weight

    def p_gpu(self, weights: EfficiencySettings) -> float:
        return self.gpus * weights.gpu_weight

    def segments(self, weights: EfficiencySettings) -> list[Segment] | None:
        """``None`` when a figure the formula needs is unknown."""
        p_cpu = self.p_cpu(weights)
        if p_cpu is None or self.cpu_eff is None or self.time_s is None:
            return None
        if self.gpus and self.gpu_eff is None:
            return None
        segs = [Segment(p_cpu, self.cpu_eff, self.time_s)]
        if self.gpus:
            segs.append(Segment(self.p_gpu(weights), self.gpu_eff or 0.0, self.time_s))
        return segs

    def efficiency(self, weights: EfficiencySettings) -> float | None:
        segs = self.segments(weights)
        return None if segs is None else stage_efficiency(segs)


def pipeline_efficiency(
    rows: Iterable[StageRow], weights: EfficiencySettings
) -> tuple[float | None, list[str]]:
    """Formula (1) over every stage with known figures, and the stages left out."""
    segments: list[Segment] = []
    left_out: list[str] = []
    for row in rows:
        segs = row.segments(weights)
        if segs is None:
            left_out.append(row.stage)
        else:
            segments.extend(segs)
    return stage_efficiency(segments), left_out


def row_from_record(stage: str, record: Mapping[str, Any]) -> StageRow | None:
    """A cluster job's row from ``reports/slurm/<stage>.json``; ``None`` for a stage that ran
    here (transport none: its record holds no figures, its measurement does)."""
    if record.get("source") in (None, "none") or not record.get("job_id"):
        return None
    return StageRow(
        stage=stage,
        where=f"job {record['job_id']}",
        time_s=record.get("run_time_s"),
        cpus=record.get("alloc_cpus"),
        cpu_eff=record.get("cpu_efficiency"),
        gpus=int(record.get("gpus") or 0),
        gpu_eff=record.get("gpu_utilization"),
    )


def row_from_measurement(m: Measurement) -> StageRow:
    return StageRow(
        stage=m.stage,
        where="here",
        time_s=m.wall_s,
        cpus=m.cpus,
        cpu_eff=cpu_efficiency(m.cpu_s, m.wall_s, m.cpus),
    )


def stage_rows(
    records: Mapping[str, Mapping[str, Any]],
    measurements: Mapping[str, Measurement],
    order: Iterable[str] = (),
) -> list[StageRow]:
    """One row per stage: a cluster job's accounting wins over a measurement here. Stages in
    ``order`` (dvc.yaml's) first, then any other, by name."""
    rows: dict[str, StageRow] = {}
    for stage, m in measurements.items():
        rows[stage] = row_from_measurement(m)
    for stage, record in records.items():
        row = row_from_record(stage, record)
        if row is not None:
            rows[stage] = row
    ordered = [s for s in order if s in rows]
    ordered += sorted(s for s in rows if s not in ordered)
    return [rows[s] for s in ordered]
