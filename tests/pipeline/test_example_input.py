"""``make example-image`` (``mlops example-input``) follows the card: a tabular model gets a
JSON request the service answers, whatever became of the example's picture writer; an image
model gets the writer's picture, or one line saying why there is none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.test_hints import post_as_curl
from tests.support.fixture_models import FixtureModel, build_fixture_model

MLOPS = str(Path(sys.executable).parent / "mlops")
NO_WRITER = f"{sys.executable} -m no_such_example.sample"


def example_input(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [MLOPS, "example-input", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def project_with(model: FixtureModel, root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    for name in ("model.onnx", "model_card.json"):
        (root / "models" / name).write_bytes((model.model_dir / name).read_bytes())
    return root


def test_a_tabular_card_gets_a_json_request_the_service_answers(tmp_path: Path) -> None:
    model = build_fixture_model(tmp_path / "m", kind="tabular")
    project = project_with(model, tmp_path / "p")
    # The fork deleted the example's picture writer: not needed for a tabular model.
    proc = example_input(project, "--writer", NO_WRITER)
    assert proc.returncode == 0, proc.stderr
    head, body, curl = proc.stdout.splitlines()
    assert head.startswith("fixture-tabular takes no images: JSON rows of 5 features")
    assert len(json.loads(body)["instances"][0]) == 5
    assert f"-d '{body}'" in curl and not (project / ".local").exists()
    assert post_as_curl(model, curl, tmp_path) == 200


def test_an_image_card_without_a_picture_writer_says_so_in_one_line(tmp_path: Path) -> None:
    model = build_fixture_model(tmp_path / "m", kind="image")
    project = project_with(model, tmp_path / "p")
    proc = example_input(project, "--writer", NO_WRITER)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "this model takes 6×6 pictures" in line and "No module named" in line, line


@pytest.mark.parametrize("card", [True, False], ids=["image-card", "no-card-yet"])
def test_an_image_model_gets_the_writers_picture(tmp_path: Path, card: bool) -> None:
    model = build_fixture_model(tmp_path / "m", kind="image")
    project = project_with(model, tmp_path / "p") if card else tmp_path / "p"
    project.mkdir(exist_ok=True)
    writer = project / "writer.py"
    writer.write_text(
        "import sys, pathlib\n"
        f"pathlib.Path(sys.argv[1]).write_bytes({model.image(0)!r})\n"
        "print(sys.argv[1] + ': a picture')\n"
    )
    proc = example_input(project, "--writer", f"{sys.executable} writer.py", "--out", "x.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "x.png: a picture\n"
    assert (project / "x.png").read_bytes() == model.image(0)
