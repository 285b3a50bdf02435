"""The cancel marker an interrupted offload leaves for a submission still on its way: made only
while that run's staging dir exists (the submission removes both), and a marker whose staging
dir is gone is pruned. A SIGTERM before anything was staged, or after the staging dir became
the run dir, used to leave ``runs/.<stage>-<id>.<nonce>.cancel`` behind for good. The rendered
shell runs here with bash, as the login node runs it; ``scancel`` is a stub on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from machinery.slurm.remote import render_cancel
from machinery.slurm.script import Layout, render_prune


def run(script: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "scancel"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], env=env, check=True)


def test_a_cancel_before_staging_or_after_submission_leaves_no_marker(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n1")
    run(render_cancel(None, layout, 120), tmp_path)
    assert not Path(layout.staging_dir + ".cancel").exists()  # nothing staged yet
    Path(layout.run_dir).mkdir(parents=True)  # staged and submitted: the dir became the run dir
    run(render_cancel(None, layout, 120), tmp_path)
    assert sorted(p.name for p in Path(layout.runs).iterdir()) == [".lock", layout.key]


def test_a_cancel_while_staged_leaves_the_marker_the_submission_reads(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n2")
    Path(layout.staging_dir).mkdir(parents=True)
    run(render_cancel(None, layout, 120), tmp_path)
    assert Path(layout.staging_dir + ".cancel").is_file()


def test_a_marker_without_its_staging_dir_is_pruned(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n3")
    runs = Path(layout.runs)
    runs.mkdir(parents=True)
    orphan = runs / ".train-0123456789abcdef.old.cancel"
    orphan.touch()
    live = Path(layout.staging_dir + ".cancel")
    Path(layout.staging_dir).mkdir()
    live.touch()
    run(render_prune(layout, 1.0), tmp_path)
    assert not orphan.exists()
    assert live.exists() and Path(layout.staging_dir).is_dir()  # a live one stays


def test_a_requeue_never_shows_squeues_none_as_its_reason() -> None:
    """squeue says ``None`` when a job has no reason; ``requeued (None)`` told nobody anything."""
    from machinery.slurm.polling import Watcher

    said: list[str] = []
    watcher = Watcher.__new__(Watcher)  # the state machine alone: no transport, no cluster
    watcher.job_id, watcher.say, watcher.node = "7", said.append, ""
    watcher.requeues, watcher._last, watcher._started = 0, ("", ""), False
    for base, reason in (("RUNNING", "None"), ("PENDING", "None"), ("RUNNING", "None")):
        watcher._state_change(base, reason, "n1")
    assert watcher.requeues == 1
    assert "job 7 requeued (requeue)" in said, said
    assert not [line for line in said if "None" in line], said


def test_transport_none_names_a_declared_out_the_command_did_not_produce(
    tmp_path: Path,
) -> None:
    """A cluster job exits 2 with "did not produce"; running here exited 0 with COMPLETED."""
    import sys

    from tests.slurm.conftest import make_project

    project = make_project(tmp_path / "p", "touch elsewhere")
    argv = [sys.executable, "-m", "machinery.cli", "offload", "--transport", "none"]
    proc = subprocess.run(
        [*argv, project.stage, "--", *project.cmd],
        cwd=project.path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"error: stage {project.stage} ran here, but did not produce out", proc.stderr
    assert "Traceback" not in proc.stderr


def _outs_tar(marker: str) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("models/model.onnx", b"onnx" + marker.encode()),
                           ("models/model_card.json", b"{}"), ("metrics.json", b"{}")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_two_runs_sharing_a_job_copy_the_outs_back_without_failing_each_other(
    tmp_path: Path,
) -> None:
    """Run B's copy-back starts while run A's is between its unpack and its check (A's transport
    hands control to B once A's tar has been read): with outs deleted and unpacked in place, B's
    delete made A report "the job did not produce models" from a job that did."""
    import threading

    from machinery.slurm.script import Layout
    from machinery.slurm.staging import stage_out
    from machinery.slurm.transport import Result

    outs = ["models", "metrics.json"]
    layout = Layout("/home/u/.mlops", "train-0123456789abcdef", "n0")
    b_started, b_may_finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    class Gate:
        """B's stream: B's sink has started (and, before the fix, deleted the outs in place)
        by the time its first read waits here."""

        def __init__(self, data: bytes) -> None:
            import io

            self.inner = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            b_started.set()
            b_may_finish.wait(10)
            return self.inner.read(size)

    class Fake:
        def __init__(self, marker: str, gate: bool, then: Any = None) -> None:
            self.marker, self.gate, self.then = marker, gate, then

        def run(self, command: str, sink: Any = None, **_: Any) -> Result:
            import io

            data = _outs_tar(self.marker)
            sink(Gate(data) if self.gate else io.BytesIO(data))
            if self.then:
                self.then()
            return Result(0, b"", b"")

    def run_b() -> None:
        try:
            stage_out(Fake("B", gate=True), layout, tmp_path, outs)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run_b)

    def hand_over() -> None:
        thread.start()
        assert b_started.wait(10)

    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.onnx").write_bytes(b"stale")
    try:
        stage_out(Fake("A", gate=False, then=hand_over), layout, tmp_path, outs)  # type: ignore
    finally:
        b_may_finish.set()
        thread.join(10)
    assert not errors, errors
    assert (tmp_path / "models/model.onnx").read_bytes() in (b"onnxA", b"onnxB")
    assert (tmp_path / "models/model_card.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "models"]  # no scratch


def test_cancel_never_counts_its_own_lease_as_another_run(tmp_path: Path) -> None:
    """The run being cancelled removes its own lease, but a heartbeat of its poll that was
    already on its way can touch it again just after (seen under load: "left job 58 running: 1
    other run(s) still wait for it" with no other run). Simulated here by an ``rm`` that removes
    nothing; only other runs' fresh leases may hold the job."""
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "mine")
    leases = Path(layout.run_dir) / "leases"
    leases.mkdir(parents=True)
    (leases / "mine").touch()
    calls = tmp_path / "scancel.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rm").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "scancel").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = render_cancel("58", layout, 60)
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert "held=" not in out.stdout, out.stdout
    assert calls.read_text().split() == ["58"]
    (leases / "other").touch()  # a live run that still waits: the job stays
    calls.unlink()
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "held=1" and not calls.exists()
