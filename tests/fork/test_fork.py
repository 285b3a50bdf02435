"""The fork, performed: another example swapped in, and the template's tests run against it.

A forker replaces ``src/example/``, ``params.yaml`` (and ``dvc.yaml`` when their stages differ)
and the example's own tests in ``tests/example/``. Here that is the wine example: 13 tabular
features, no image preprocessing, three named labels, gradient boosting. The fork must need
nothing else, and the template's tests must pass in it unchanged.

What runs in the fork, and why that set is the guard (CI's 40 minutes cannot hold the whole
suite twice): every template test that consumes what the example produces runs for real in
the fork — ``tests/pipeline/`` (``dvc repro`` of the forked pipeline end to end, re-run rules,
deps, baseline diff, report, the S3 remote), the forker's own ``tests/example/``, and here the
forked model published to a real S3 registry and served by the service. The other template
tests (registry, service, slurm, CI, k8s) run on fixture models of their own and touch the
example only if they import it or read its files: ``test_independence.py`` refuses that for
every file, cheaply, in the main suite.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from machinery.registry import Registry
from tests.fork.stages import write_fork_pipeline
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import Workspace, venv_stamp

HERE = Path(__file__).parent
FORKER_MAY_TOUCH = ("src/example/", "tests/example/", "params.yaml", "dvc.yaml", "dvc.lock")
IN_THE_FORK = ["tests/pipeline", "tests/example", "tests/fork/test_independence.py"]
# Pipeline-area tests that read nothing the example makes (fixture models, params of their
# own); the static scan covers them, so the fork does not pay for them twice.
NOT_IN_THE_FORK = [
    "tests/pipeline/test_hints.py",
    "tests/pipeline/test_params.py",
    "tests/pipeline/test_where.py",
]


def swap_in(dest: Path, name: str) -> Workspace:
    """Copy the repository as it is (uncommitted changes included) and put ``<name>_example``,
    ``<name>_tests`` and ``<name>_params.yaml`` (beside this file) where the example was, with
    stage definitions of its own (``tests/fork/stages.py``): the ``dvc.yaml`` found here may be
    a fork's, declaring outputs the swapped-in example never writes."""
    ws = Workspace.clone(dest)
    for target, source in (("src/example", f"{name}_example"), ("tests/example", f"{name}_tests")):
        # A fork runs this too, and may have deleted, renamed or not yet written tests/example/.
        shutil.rmtree(ws.path / target, ignore_errors=True)
        shutil.copytree(HERE / source, ws.path / target)
    shutil.copy(HERE / f"{name}_params.yaml", ws.path / "params.yaml")
    write_fork_pipeline(ws.path, name)
    return ws


def fork(dest: Path) -> Workspace:
    """The wine fork, committed."""
    ws = swap_in(dest, "wine")
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "fork: wine model")
    return ws


def first_run(ws: Workspace, what: str) -> Workspace:
    """The fork after its first ``make run``, with the new ``dvc.lock`` committed."""
    ws.dvc("repro")
    ws.git("add", "dvc.lock")
    ws.git("commit", "-q", "-m", f"fork: dvc.lock of the {what} pipeline")
    return ws


def assert_only_forker_files_changed(ws: Workspace) -> None:
    template = ws.git("rev-list", "--max-parents=0", "HEAD").stdout.strip()
    changed = ws.git("diff", "--name-only", template, "HEAD").stdout.split()
    assert changed and all(path.startswith(FORKER_MAY_TOUCH) for path in changed), changed


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return first_run(fork(tmp_path_factory.mktemp("fork") / "ws"), "wine")


@pytest.mark.slow
def test_fork_changes_nothing_outside_the_example_params_and_dvc_yaml(forked: Workspace) -> None:
    assert_only_forker_files_changed(forked)


def pytest_in(ws: Workspace, *args: str) -> str:
    """Run pytest in ``ws`` (its own code, this venv); assert it passed; its summary line."""
    # A short base: unix sockets of the servers the tests start must fit in 108 bytes.
    basetemp = Path(tempfile.mkdtemp(prefix="fork-", dir="/tmp"))
    proc = ws.run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={basetemp / 'pytest'}",
        *args,
        check=False,
    )
    shutil.rmtree(basetemp, ignore_errors=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"tests fail in {ws.path}: {summary}\n{proc.stdout[-6000:]}"
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    return summary


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_template_tests_pass_in_the_fork(forked: Workspace) -> None:
    pytest_in(forked, *[f"--ignore={path}" for path in NOT_IN_THE_FORK], *IN_THE_FORK)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "moved_to", [None, "tests/digits"], ids=["deleted-with-own-plot-no-sample", "renamed"]
)
def test_a_fork_without_tests_example_passes_the_fork_tests(
    moved_to: str | None, tmp_path: Path
) -> None:
    # A team that deleted the example's tests before writing their own, or keeps them elsewhere
    # (where they import `example`, as the example's tests do), runs the template's suite.
    team = Workspace.clone(tmp_path / "team")
    if moved_to:
        (team.path / "tests/example").rename(team.path / moved_to)
    else:
        shutil.rmtree(team.path / "tests/example")
        # The same team's pipeline has a plot of its own and no picture writer: neither may
        # reach the fork tests, which swap in stages of their own.
        add_a_plot(team, "eval/plots/roc.json")
        (team.path / "src/example/sample.py").unlink()
    team.git("add", "-A")
    team.git("commit", "-q", "-m", "our model's tests: not there yet, or elsewhere")
    # Its fork test, but not the suite it runs in its fork: that is the one above, whose copy
    # differs from this only in the moved tests, which test_independence.py scans here.
    nested = ["test_template_tests_pass_in_the_fork", "test_a_fork_without_tests_example_passes"]
    pytest_in(team, "tests/fork", "-k", " and ".join(f"not {name}" for name in nested))


def add_a_plot(ws: Workspace, path: str) -> None:
    """A forker's own plot in their ``dvc.yaml``: declared by evaluate, a dep of report. (Their
    pipeline does not run here: what matters is that this file never reaches a fork test.)"""
    dvc_yaml = ws.path / "dvc.yaml"
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    stages = pipeline["stages"]
    stages["evaluate"]["plots"].append({path: {"template": "simple", "x": "fpr", "y": "tpr"}})
    stages["report"]["deps"].insert(1, path)
    dvc_yaml.write_text(yaml.safe_dump(pipeline, sort_keys=False))


@pytest.mark.slow
def test_fork_without_a_picture_writer_prints_a_json_request(forked: Workspace) -> None:
    # The wine example has no sample.py: `make example-image` follows the tabular card.
    assert not (forked.path / "src/example/sample.py").exists()
    venv = Path(sys.executable).parent.parent
    proc = forked.run("make", "example-image", f"VENV={venv}", "-o", str(venv_stamp(venv)))
    lines = proc.stdout.splitlines()
    assert lines[-3].startswith("wine-quality-grader takes no images: JSON rows of 13 features")
    assert len(json.loads(lines[-2])["instances"][0]) == 13
    assert "No module named" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_fork_runs_the_whole_pipeline_and_reports_its_own_model(forked: Workspace) -> None:
    md = (forked.path / "reports/report.md").read_text()
    # The estimator's name is escaped for GFM (gradient\_boosting renders as gradient_boosting).
    assert "`wine-quality-grader` (gradient\\_boosting)" in md
    assert "input `features`: N × 13, float32" in md
    html = (forked.path / "reports/report.html").read_text()
    assert "data:image/png;base64," in html and "per class f1" in html


@pytest.mark.slow
@pytest.mark.integration
def test_fork_model_publishes_to_an_s3_registry_unchanged(
    forked: Workspace,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url(f"s3://{s3_bucket}/registry")
    metrics = json.loads((forked.path / "eval/metrics.json").read_text())
    meta = registry.publish("wine-v1", forked.path / "models", metrics=metrics)
    assert meta.card.input.shape == [None, 13] and meta.card.preprocessing is None
    assert (
        registry.download("wine-v1", tmp_path / "dl").read_bytes()
        == (forked.path / "models/model.onnx").read_bytes()
    )


@pytest.mark.slow
def test_service_serves_the_fork_model_without_a_change(forked: Workspace, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.main import create_app
    from service.settings import Settings

    registry = Registry.from_url(str(tmp_path / "registry"))
    registry.publish("wine-v1", forked.path / "models", metrics={"accuracy": 0.9})
    registry.move_alias("prod", "wine-v1", by="test")
    settings = Settings(
        registry_url=str(tmp_path / "registry"),
        model_alias="prod",
        model_cache_dir=tmp_path / "cache",
        alias_poll_seconds=0,
        auth_enabled=False,
    )
    with np.load(forked.path / "data/prepared/test.npz") as test:
        rows = test["X"][:3].tolist()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post("/predict", json={"instances": rows})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_tag"] == "wine-v1"
        assert {p["label"] for p in body["predictions"]} <= {"barolo", "grignolino", "barbera"}

        wrong_width = client.post("/predict", json={"instances": [[1.0] * 64]})
        assert wrong_width.status_code == 422 and "13" in wrong_width.text

        # No image preprocessing in this card: an upload is refused with a reason, not a 500.
        upload = client.post("/predict", files={"file": ("x.png", b"\x89PNG\r\n", "image/png")})
        assert 400 <= upload.status_code < 500
