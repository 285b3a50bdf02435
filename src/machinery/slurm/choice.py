"""Which transport ``mlops offload`` uses, read without building the settings.

Transport ``none`` (train here) runs before every local training, and validating the full
settings there costs more than the rest of that command's start: pydantic-settings is ~80 ms of
its ~0.2 s (``python -X importtime``). The full settings are only needed to reach a cluster.
So this reads just the transport with the same precedence as ``SlurmSettings`` (option, then
``MLOPS_SLURM_TRANSPORT``, then ``slurm.yaml``, default ``none``), and answers ``None`` whenever
it cannot tell with certainty: then the full settings decide and report the error. A
``slurm.yaml`` with a key the settings do not know (``transprot: ssh``) is such a case, so a typo
never silently trains here.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONFIG_ENV = "MLOPS_SLURM_CONFIG"
DEFAULT_CONFIG = Path("slurm.yaml")
TRANSPORTS = ("none", "local", "ssh")
# The top-level keys of ``SlurmSettings`` (a test keeps the two equal).
SETTINGS_KEYS = frozenset(
    {
        "transport",
        "ssh_host",
        "ssh_port",
        "ssh_user",
        "ssh_key_file",
        "ssh_key",
        "ssh_known_hosts",
        "connect_timeout",
        "reconnect_timeout",
        "workdir",
        "poll_interval",
        "controller_warn_after",
        "accounting_wait",
        "lease_ttl",
        "prune_after_days",
        "min_free_mb",
        "cache_deps",
        "resubmit",
        "job",
        "env",
        "efficiency",
    }
)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG)))


def chosen_transport(option: str | None = None) -> str | None:
    """``none``, ``local`` or ``ssh``; ``None`` when only the full settings can say."""
    if option is not None:
        return option if option in TRANSPORTS else None
    # pydantic-settings matches environment names case-insensitively.
    from_env = [v for k, v in os.environ.items() if k.upper() == "MLOPS_SLURM_TRANSPORT"]
    if len(from_env) > 1:
        return None
    path = config_path()
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict) or not set(data) <= SETTINGS_KEYS:
            return None
    elif CONFIG_ENV in os.environ:
        return None  # named but missing: the settings say so
    else:
        data = {}
    value = from_env[0] if from_env else data.get("transport", "none")
    return value if value in TRANSPORTS else None
