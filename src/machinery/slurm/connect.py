"""Pick the transport the settings name. Its own module so that the dependency runs one way:
``ssh`` and ``framing`` import the shared types from ``transport``, and only this module knows
both transports."""

from __future__ import annotations

from machinery.slurm.settings import SlurmSettings
from machinery.slurm.transport import LocalTransport, Transport


def make_transport(settings: SlurmSettings) -> Transport:
    if settings.transport == "ssh":
        from machinery.slurm.ssh import SshTransport  # paramiko: only for transport ssh

        return SshTransport(settings)
    return LocalTransport()
