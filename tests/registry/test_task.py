"""The card names its task: ``mlops registry`` shows it, a regression card publishes, and a card
written before the field existed is refused in one line that says how to get a new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from machinery.errors import UserError
from machinery.modelcard import CARD_FILENAME, read_card
from machinery.registry import Registry
from tests.registry.helpers import Trained
from tests.registry.test_cli import assert_one_line_error, mlops, publish, run  # noqa: F401
from tests.support.fixture_models import build_regression_model


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    fixture = build_regression_model(tmp_path_factory.mktemp("regression"))
    return Trained(fixture.model_dir, {"rmse": 53.1, "mae": 42.0, "r2": 0.45})


def old_card(source: Path, dest: Path) -> Path:
    """``source``'s model directory as train wrote it before cards named their task."""
    dest.mkdir()
    (dest / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    card = json.loads((source / CARD_FILENAME).read_text())
    del card["task"]
    card["schema_version"] = 1
    (dest / CARD_FILENAME).write_text(json.dumps(card))
    return dest


def test_list_and_show_name_the_task_and_a_regressions_output(
    mlops: CliRunner,  # noqa: F811
    tmp_path: Path,
    trained: tuple[Trained, Trained],
    regression: Trained,
) -> None:
    assert publish(mlops, tmp_path, trained[0], "cls-v1").exit_code == 0
    published = publish(mlops, tmp_path, regression, "reg-v1")
    assert published.exit_code == 0, published.output
    lines = run(mlops, "list").stdout.splitlines()
    assert "TASK" in lines[0].split()
    column = lines[0].index("TASK")  # the table aligns columns; CREATED holds spaces
    tasks = {line.split()[0]: line[column:].split()[0] for line in lines[1:]}
    assert tasks == {"reg-v1": "regression", "cls-v1": "classification"}
    shown = run(mlops, "show", "reg-v1").stdout
    assert "task" in shown and "regression" in shown
    assert "variable [None, 1] float32" in shown and "labels" not in shown
    as_json = json.loads(run(mlops, "list", "--json").stdout)
    assert {m["tag"]: m["card"]["task"] for m in as_json} == tasks


def test_an_old_card_is_one_line_naming_the_missing_field(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained]  # noqa: F811
) -> None:
    old = Trained(old_card(trained[0].model_dir, tmp_path / "old"), trained[0].metrics)
    with pytest.raises(UserError) as caught:
        read_card(old.model_dir / CARD_FILENAME)
    message = str(caught.value)
    assert "schema_version 1 has no 'task' field" in message and "re-run train" in message
    assert "\n" not in message
    assert_one_line_error(publish(mlops, tmp_path, old, "old-v1"), "no 'task' field", "make run")


def test_a_published_old_card_is_listed_apart_with_the_reason(
    tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    """A registry that holds a tag published before the field: the tag is set apart with
    the reason (the service refuses a swap to it), every other tag lists."""
    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish("new-v1", trained[0].model_dir, metrics={})
    registry.publish("old-v1", trained[1].model_dir, metrics={})
    meta_path = tmp_path / "registry/models/old-v1/meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["card"]["task"]
    meta["card"]["schema_version"] = 1
    meta_path.write_text(json.dumps(meta))
    listing = registry.listing()
    assert [m.tag for m in listing.models] == ["new-v1"]
    [bad] = listing.invalid
    assert bad.tag == "old-v1" and "no 'task' field" in bad.error and "re-run train" in bad.error


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"labels": ["low", "high"]}, "a regression card has no labels"),
        ({"output": {"label": "label", "probabilities": "probabilities"}}, "names its value"),
        ({"task": "classification"}, "a classification card lists its labels"),
        ({"task": "ranking"}, "task: Input should be 'classification' or 'regression'"),
    ],
)
def test_a_card_that_contradicts_its_task_is_one_line(
    regression: Trained, tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    card = json.loads((regression.model_dir / CARD_FILENAME).read_text())
    card.update(changes)
    path = tmp_path / CARD_FILENAME
    path.write_text(json.dumps(card))
    with pytest.raises(UserError) as caught:
        read_card(path)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_a_regression_card_without_output_gets_skl2onnxs_value_output(
    regression: Trained, tmp_path: Path
) -> None:
    card = json.loads((regression.model_dir / CARD_FILENAME).read_text())
    del card["output"]
    path = tmp_path / CARD_FILENAME
    path.write_text(json.dumps(card))
    output = read_card(path).output
    assert output.model_dump() == {"name": "variable", "shape": [None, 1], "dtype": "float32"}
