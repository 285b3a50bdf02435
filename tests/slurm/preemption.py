"""A cluster of its own whose high-tier partition preempts the default one, for the tests of a
PREEMPTED job (tests/slurm/test_no_accounting_cluster.py) and of PREEMPTED array tasks
(tests/sweep/test_array_preempted.py).

``PreemptType=preempt/partition_prio`` with ``PreemptMode=CANCEL``: a job in ``urgent``
(PriorityTier 10) that needs the whole node cancels the jobs of ``debug`` (tier 1) in its way,
which then end PREEMPTED. It runs beside the session's shared cluster (own ports, state
directory and munge socket).
"""

from __future__ import annotations

from tests.slurm.conftest import Cluster, start_local_cluster

CPUS = 2  # the preempting job asks for all of them
PREEMPTION = [
    "PreemptType=preempt/partition_prio",
    "PreemptMode=CANCEL",
    "PartitionName=urgent Nodes=${host} PriorityTier=10 MaxTime=INFINITE State=UP",
]


def start_preempting_cluster(*, accounting: bool) -> Cluster:
    """``up`` takes well under a second without the database, ~3 s with it."""
    return start_local_cluster(CPUS, accounting=accounting, extra_conf=PREEMPTION)


def preempt(cluster: Cluster) -> str:
    """As root, into the high tier, asking for the whole node: only preempting the running
    ``debug`` jobs makes room. Returns the urgent job's id."""
    out = cluster.slurm(
        "sbatch", "--parsable", "-p", "urgent", f"-c{CPUS}", "-o", "/dev/null", "--wrap", "true"
    )
    return out.strip().split(";")[0]
