"""Where and how a stage is offloaded: ``slurm.yaml`` in the repo, overridden by the environment.

Every key can be overridden by ``MLOPS_SLURM_<KEY>`` (nested keys with ``__``, e.g.
``MLOPS_SLURM_JOB__PARTITION``). The SSH keys are flat on purpose: CI secrets set
``MLOPS_SLURM_SSH_HOST``, ``…_SSH_USER``, ``…_SSH_PORT``, ``…_SSH_KEY`` (the private key text) or
``…_SSH_KEY_FILE``, and ``…_SSH_KNOWN_HOSTS`` (a known_hosts line, or a file holding them).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from machinery.efficiency.settings import EfficiencySettings
from machinery.errors import UserError
from machinery.slurm.choice import CONFIG_ENV, config_path


class JobSettings(BaseModel):
    """The ``#SBATCH`` resources of the job; empty strings leave the cluster's default."""

    model_config = ConfigDict(extra="forbid")

    partition: str = ""
    time: str = Field(default="01:00:00", description="sbatch --time: MM, HH:MM:SS or D-HH:MM")
    cpus: int = Field(default=1, ge=1)
    mem: str = Field(default="", description="sbatch --mem, e.g. 4G")
    gpus: int = Field(default=0, ge=0)
    account: str = ""
    qos: str = ""
    extra: list[str] = Field(default_factory=list, description="more #SBATCH options")


class EnvSettings(BaseModel):
    """How the job gets its Python: a venv built on the login node, an image, or the setup."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["venv", "apptainer", "charliecloud", "none"] = "venv"
    python: str = "python3"
    lock: str = "requirements.lock"
    uv_version: str = "0.13.9"
    image: str = Field(
        default="",
        description="apptainer: the image path on the cluster; charliecloud: the image here, "
        "as podman names it (e.g. what `make image` built), converted and staged per digest",
    )
    apptainer_args: list[str] = Field(default_factory=list)
    ch_run_args: list[str] = Field(default_factory=list, description="more ch-run options")
    setup: list[str] = Field(default_factory=list, description="shell lines run before CMD")
    build_timeout: float = Field(
        default=3600.0, gt=0, description="seconds the venv build on the login node may take"
    )


class SlurmSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_SLURM_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    transport: Literal["none", "local", "ssh"] = "none"
    ssh_host: str = ""
    ssh_port: int = 22
    ssh_user: str = ""
    ssh_key_file: str = ""
    ssh_key: SecretStr | None = None
    ssh_known_hosts: str = ""
    connect_timeout: float = Field(default=10.0, gt=0)
    reconnect_timeout: float = Field(default=300.0, ge=0)
    workdir: str = Field(default="~/.mlops", description="on the cluster: run dirs and venvs")
    poll_interval: float = Field(default=0.25, gt=0)
    controller_warn_after: float = Field(
        default=30.0, gt=0, description="warn when squeue has not answered for this long"
    )
    accounting_wait: float = Field(
        default=10.0, ge=0, description="wait this long for sacct's record, then do without"
    )
    lease_ttl: float = Field(
        default=120.0, gt=0, description="a watching run that is silent this long holds nothing"
    )
    prune_after_days: float = Field(
        default=7.0, ge=0, description="remove finished run dirs older than this (0: never)"
    )
    min_free_mb: float = Field(
        default=100.0,
        ge=0,
        description="refuse to submit while the runs dir on the cluster has less free (0: never)",
    )
    cache_deps: bool = Field(default=True, description="keep large deps on the cluster by hash")
    resubmit: bool = Field(default=False, description="replace the job even if it completed")
    job: JobSettings = Field(default_factory=JobSettings)
    env: EnvSettings = Field(default_factory=EnvSettings)
    # formula (1)'s weights and the advice thresholds (docs/slurm.md, "Efficiency")
    efficiency: EfficiencySettings = Field(default_factory=EfficiencySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, config_path()))


def load_settings(**overrides: Any) -> SlurmSettings:
    """Settings from ``slurm.yaml`` (or ``$MLOPS_SLURM_CONFIG``) and the environment."""
    path = config_path()
    if CONFIG_ENV in os.environ and not path.is_file():
        raise UserError(f"{path}: file not found (set by {CONFIG_ENV})")
    try:
        return SlurmSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path} / MLOPS_SLURM_*: {key}: {first['msg']}") from None
    except ValueError as exc:  # YAML syntax errors surface as ValueError subclasses
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
