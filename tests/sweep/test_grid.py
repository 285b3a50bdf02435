"""The grid: expansion, the pruning rule, names, and every refusal as one line before anything
is submitted."""

from __future__ import annotations

from pathlib import Path

import pytest

from machinery.errors import UserError
from machinery.sweep.grid import expand, parse_options, point_name
from tests.support.workspace import assert_one_line_error
from tests.sweep.project import make_sweep_project

PARAMS = {"train": {"estimator": "svc", "svc": {"C": 1.0}, "logreg": {"C": 1.0}, "seed": 1}}


def test_a_full_grid_is_every_combination() -> None:
    grid = parse_options(["train.seed=1,2,3", "train.svc.C=1,10"])
    points = expand(grid, PARAMS)
    assert [p.values for p in points] == [
        {"train.seed": s, "train.svc.C": c} for s in (1, 2, 3) for c in (1, 10)
    ]
    assert points[1].name == "seed-1_svc.C-10"


def test_keys_under_an_unselected_estimator_are_pruned() -> None:
    grid = parse_options(["train.estimator=svc,logreg", "train.svc.C=1,10,100"])
    points = expand(grid, PARAMS)
    # svc.C applies only where estimator is svc: logreg runs once, not three times.
    assert [p.values for p in points] == [
        {"train.estimator": "svc", "train.svc.C": 1},
        {"train.estimator": "svc", "train.svc.C": 10},
        {"train.estimator": "svc", "train.svc.C": 100},
        {"train.estimator": "logreg"},
    ]
    assert points[3].params(PARAMS)["train"]["svc"]["C"] == 1.0  # params.yaml's value
    assert [p.name for p in points][-1] == "estimator-logreg"


def test_the_selector_may_come_from_params_yaml() -> None:
    points = expand(parse_options(["train.svc.C=1,10"]), PARAMS)
    assert len(points) == 2


@pytest.mark.parametrize(
    ("options", "params", "needle"),
    [
        (["train.logreg.C=1,2"], PARAMS, "train.logreg.C: never applies (train.estimator"),
        (["train.nosuch=1"], PARAMS, "train.nosuch: unknown key (not in params.yaml)"),
        (["train.svc=1"], PARAMS, "train.svc: a section in params.yaml"),
        (["train.seed="], PARAMS, "train.seed: no values"),
        (["train.seed"], PARAMS, "expected KEY=VALUE"),
        ([], PARAMS, "empty grid"),
    ],
)
def test_refusals(options: list[str], params: dict[str, object], needle: str) -> None:
    from machinery.sweep.grid import check_keys

    with pytest.raises(UserError) as err:
        grid = parse_options(options)
        check_keys(grid, params, "params.yaml")
        expand(grid, params)
    assert needle in str(err.value)


def test_more_points_than_the_maximum_is_refused() -> None:
    grid = parse_options(["train.seed=" + ",".join(str(i) for i in range(9))])
    assert len(expand(grid, PARAMS, max_points=9)) == 9
    with pytest.raises(UserError, match="the grid has 9 points, more than the maximum 8"):
        expand(grid, PARAMS, max_points=8)


def test_names_are_git_ref_and_shell_safe() -> None:
    assert point_name({"a.b": "x y/z", "a.c": -1.5}) == "b-x-y-z_c--1.5"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-S", "train.nosuch=1,2"], "train.nosuch: unknown key"),
        (["-S", "train.ridge.alpha="], "no values"),
        (["-S", "train.ridge.alpha=" + ",".join(map(str, range(65)))], "65 points, more than"),
        (["-S", "train.ridge.alpha=1,2", "--max-points", "1"], "2 points, more than the maximum 1"),
        (["-S", "train.knn.k=1,2"], "train.knn.k: never applies (train.estimator is never knn"),
    ],
)
def test_the_cli_refuses_before_anything_is_submitted(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    project = make_sweep_project(tmp_path / "p")
    # A login node nobody listens on: had the sweep tried to submit, the error would say so.
    unreachable = {
        "MLOPS_SLURM_TRANSPORT": "ssh",
        "MLOPS_SLURM_SSH_HOST": "127.0.0.1",
        "MLOPS_SLURM_SSH_PORT": "9",
        "MLOPS_SLURM_SSH_USER": "nobody",
    }
    proc = project.sweep("train", *args, env=unreachable)
    assert_one_line_error(proc, needle)
