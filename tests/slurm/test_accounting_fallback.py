"""A cluster without slurmdbd: sacct's own refusal means "do without", at once, not a wait.

The unit-level check of ``account`` (one sacct call, the record's fields); the same on a real
cluster without slurmdbd, through ``mlops offload``, is in test_no_accounting_cluster.py, and
slurmdbd stopped mid-run on the shared cluster in test_logs_and_records.py.
"""

from __future__ import annotations

import io
import time

from machinery.slurm.logstream import LogStream
from machinery.slurm.polling import Watcher, account
from machinery.slurm.script import Layout
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.transport import Result

# What sacct prints on a cluster with AccountingStorageType=accounting_storage/none.
DISABLED = b"sacct: error: Slurm accounting storage is disabled\n"


class SacctDisabled:
    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600, **_: object):
        self.calls += 1
        assert "sacct" in command
        times = b"start=1700000000.5\nrestarts=0\nend=1700000004.0\nrc=0\n"
        return Result(1, b"@@RC@@=1\n@@TIMES@@\n" + times, DISABLED)


def test_no_slurmdbd_falls_back_to_squeue_and_the_jobs_exit_code_at_once() -> None:
    settings = SlurmSettings(accounting_wait=30)
    layout = Layout("/home/u/.mlops", "work-0123456789abcdef", "n0")
    transport = SacctDisabled()
    said: list[str] = []
    watcher = Watcher(transport, settings, layout, "42", LogStream(io.StringIO()), said.append)
    watcher.final_state, watcher.node = "COMPLETED", "node07"
    started = time.monotonic()
    acc = account(transport, settings, layout, watcher, said.append)
    assert time.monotonic() - started < 1 and transport.calls == 1  # no 30 s wait
    assert acc.error and "accounting storage is disabled" in acc.error
    record = acc.record
    assert (record.state, record.exit_code, record.node) == ("COMPLETED", 0, "node07")
    assert record.elapsed_s == 3.5 and record.max_rss_bytes is None
    assert any("using squeue's state" in line for line in said)
