"""``efficiency:`` in ``slurm.yaml``: the weights of formula (1) and the advice thresholds.

Light on purpose (pydantic only): ``machinery.slurm.settings`` imports it for every offload.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EfficiencySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Formula (1) weighs each allocated unit by what it costs the platform: the source paper
    # uses about 1 per CPU core and 10-40 per GPU.
    cpu_weight: float = Field(default=1.0, gt=0, description="p per allocated CPU core")
    gpu_weight: float = Field(default=20.0, gt=0, description="p per allocated GPU")
    # Advice thresholds (a figure Slurm did not give never raises a flag).
    low_cpu_below: float = Field(
        default=0.6, ge=0, le=1, description="flag a multi-core job whose CPU efficiency is below"
    )
    mem_over_ratio: float = Field(
        default=4.0, gt=1, description="flag memory asked at least this many times MaxRSS"
    )
    mem_headroom: float = Field(default=1.5, ge=1, description="suggested mem = MaxRSS × this")
    gpu_idle_below: float = Field(
        default=0.1, ge=0, le=1, description="flag allocated GPUs used below this on average"
    )
    short_run_s: float = Field(
        default=600.0, ge=0, description="flag a job that ran under this many seconds"
    )
    time_over_ratio: float = Field(
        default=4.0, gt=1, description="flag a time limit at least this many times the run"
    )
    time_headroom: float = Field(
        default=2.0, ge=1, description="suggested time = run × this, in whole minutes"
    )
