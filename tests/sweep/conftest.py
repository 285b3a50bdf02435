"""The sweep tests: the session's real Slurm cluster (tests/slurm) and their own fixture
project (tests/sweep/project.py), never the example."""

from __future__ import annotations

from tests.slurm.conftest import Cluster, cluster  # noqa: F401 - the session's Slurm
from tests.support.report_project import (  # noqa: F401 - the comment's fixture project
    mlops,
    project,
    report_project_template,
)

__all__ = ["Cluster"]
