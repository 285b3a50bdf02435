"""The report reads only the metrics and plot data ``dvc.yaml`` declares, and its stage depends
on exactly those files: a leftover under ``eval/plots/`` (a forker's old ``per_class.json``)
neither shows in the report nor gets hashed into ``dvc.lock``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from machinery.report.declared import declared
from tests.support import report_project as fixtures
from tests.support.markdown import tables
from tests.support.report_project import Mlops, ReportProject
from tests.support.workspace import REPO, Workspace

report_project_template = fixtures.report_project_template
project = fixtures.project
mlops = fixtures.mlops


def test_the_report_stage_depends_on_each_declared_file_and_no_folder_of_them() -> None:
    report = Workspace(REPO).stages()["report"]
    deps = [Path(d) for d in report["deps"]]
    files = declared(REPO / "dvc.yaml").files()
    assert files, "dvc.yaml declares no metrics or plots"
    missing = [str(f) for f in files if f not in deps]
    assert not missing, f"dvc.yaml: add these to the report stage's deps: {missing}"
    folders = [str(d) for d in deps if any(d in f.parents for f in files)]
    assert not folders, (
        f"dvc.yaml: the report stage depends on the folder(s) {folders}: list the declared files"
        " instead (a leftover file in a folder is hashed into dvc.lock)"
    )


@pytest.mark.integration
def test_a_leftover_plot_file_is_not_in_the_report(project: ReportProject, mlops: Mlops) -> None:
    dvc_yaml = project.path / "dvc.yaml"
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    # The fork's evaluate writes residuals now; per_class.json is still on disk from before.
    pipeline["plots"] = [{"eval/plots/residuals.json": {"x": "predicted", "y": "residual"}}]
    dvc_yaml.write_text(yaml.safe_dump(pipeline))
    project.write_json("eval/plots/residuals.json", [{"predicted": 1.0, "residual": 0.5}] * 3)
    assert (project.path / "eval/plots/per_class.json").is_file()

    result = mlops("report")
    assert result.exit_code == 0, result.output
    md = (project.path / "reports/report.md").read_text()
    assert "Per class" not in md and not any(t[0][0] == "label" for t in tables(md))
    assert "- residuals: plot data `eval/plots/residuals.json`, 3 points" in md
    html = (project.path / "reports/report.html").read_text()
    assert "Per class" not in html and "eval/plots/residuals.json" in html
