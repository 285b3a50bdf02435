"""The fork tests' own stage definitions (``tests/fork/stages.py``): derived for the example
they swap in, whatever ``dvc.yaml`` the repository they run in holds (a fork's may declare
``eval/plots/roc.json``, which the wine example never writes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from machinery.report.declared import declared
from tests.fork.stages import PLOTS, fork_pipeline, write_fork_pipeline
from tests.pipeline.test_deps import covered, import_closure, stage_module
from tests.support.workspace import REPO

HERE = Path(__file__).parent


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_the_derived_stages_fit_the_swapped_in_example(name: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(REPO / "src/machinery", ws / "src/machinery")
    shutil.copytree(HERE / f"{name}_example", ws / "src/example")
    # The repository's own dvc.yaml, with a plot of a fork's own: it must not leak through.
    (ws / "dvc.yaml").write_text(
        (REPO / "dvc.yaml").read_text().replace("eval/plots/per_class.json", "eval/plots/roc.json")
    )
    write_fork_pipeline(ws, name)
    stages = fork_pipeline(ws, PLOTS[name])["stages"]
    assert (ws / "dvc.yaml").read_text().count("roc.json") == 0

    for stage, spec in stages.items():  # the rule tests/pipeline/test_deps.py holds forks to
        module = stage_module(spec["cmd"])
        assert module is not None, stage
        missing = [
            p for p in import_closure(module, ws / "src") if not covered(p, spec["deps"], root=ws)
        ]
        assert not missing, (stage, missing)
    files = declared(ws / "dvc.yaml").files()
    assert [str(f) for f in files if str(f) not in stages["report"]["deps"]] == []
    assert "eval/plots" not in stages["report"]["deps"]
