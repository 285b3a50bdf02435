"""The sweep tests: the session's real Slurm cluster (tests/slurm) and their own fixture
project (tests/sweep/project.py), never the example."""

from __future__ import annotations

from tests.slurm.conftest import Cluster, cluster  # noqa: F401 - the session's Slurm

__all__ = ["Cluster"]
