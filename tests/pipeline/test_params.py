"""``machinery.params``: a mistake in ``params.yaml`` is one line naming the key, through a stage
of the test's own (whatever the example's sections and keys are)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.workspace import REPO, assert_one_line_error

# A stage as a forker writes one: a typed section, read through the template's helpers.
STAGE = """
from pydantic import BaseModel, ConfigDict, Field

from machinery.errors import exits_cleanly
from machinery.params import load_section


class Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int = Field(gt=0)
    rate: float


@exits_cleanly
def main() -> None:
    print(load_section("probe", Knobs))


main()
"""
GOOD = {"probe": {"depth": 3, "rate": 0.5}}


def run_stage(cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "probe_stage.py").write_text(STAGE)
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [sys.executable, "probe_stage.py"], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_good_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(GOOD))
    proc = run_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "depth=3 rate=0.5" in proc.stdout


def test_missing_params_file(tmp_path: Path) -> None:
    assert_one_line_error(run_stage(tmp_path), "params.yaml", "not found")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("probe:\n  depth: 1\n  rate: [0.2\n")
    assert_one_line_error(run_stage(tmp_path), "params.yaml", "not valid YAML", "line")


def test_missing_section(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"other": {"x": 1}}))
    assert_one_line_error(run_stage(tmp_path), "missing section 'probe'")


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"rate": 0.5}, "probe.depth"),
        ({"depth": "deep", "rate": 0.5}, "probe.depth"),
        ({"depth": -1, "rate": 0.5}, "probe.depth"),
        ({"depth": 3, "rate": 0.5, "rte": 1}, "probe.rte"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, section: dict[str, object], key: str) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"probe": section}))
    assert_one_line_error(run_stage(tmp_path), key)
