"""An offload over SSH leaves nothing on stderr but its own lines: no traceback, and none of the
"Exception ignored in ..." messages Python prints for an object that fails while it is
finalized (at a garbage collection or at interpreter exit, which only a subprocess shows)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.slurm.conftest import Cluster, Project

pytestmark = [pytest.mark.integration]

Factory = Callable[..., Project]
# A project of a few hundred files, as a real one is: its snapshot is a long tar stream whose
# members keep their TarFile in a reference cycle, collected with whatever it wrote to.
CODE_FILES = 300


@pytest.mark.parametrize(
    "shell, rc", [("mkdir -p out && echo done > out/x", 0), ("echo boom; exit 3", 1)]
)
def test_an_offload_over_ssh_writes_no_traceback_to_stderr(
    cluster: Cluster, project_factory: Factory, shell: str, rc: int
) -> None:
    project = project_factory(shell)
    (project.path / "src").mkdir()
    for i in range(CODE_FILES):
        (project.path / "src" / f"module_{i}.py").write_text(f"VALUE = {i}\n")

    proc = project.run(cluster.env())

    assert proc.returncode == rc, proc.stderr
    assert "submitted job" in proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # Every line is the offload's own: progress ([slurm] ...), the job's log tail, or the error.
    lines = proc.stderr.splitlines()
    assert all(ln.startswith(("[slurm]", "    ", "error: ")) for ln in lines), proc.stderr
