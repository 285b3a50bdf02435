"""``mlops deploy promote``: prod gets staging's tag and image in one step, or nothing at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from machinery.deploy.overlay import ImageRef, read_image
from machinery.registry.registry import Registry
from tests.ci.gitrepo import git, git_env, make_origin
from tests.support.fixture_models import build_fixture_model

pytestmark = pytest.mark.integration

MLOPS = str(Path(sys.executable).parent / "mlops")
PROD = "k8s/overlays/prod/kustomization.yaml"
IMAGE = ImageRef("127.0.0.1:5000/group/project/inference", "sha256:" + "5e" * 32)


def _run(cwd: Path, registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = git_env(MLOPS_REGISTRY_URL=str(registry))
    return subprocess.run([MLOPS, *args], cwd=cwd, env=env, capture_output=True, text=True)


def _staging(tmp_path: Path, image_commit_of: str) -> tuple[Path, Path, str]:
    """origin with staging bumped to IMAGE built from ``image_commit_of`` ("tag" = the tag's
    commit), a registry whose staging alias points at a tag trained on the first commit."""
    origin = make_origin(tmp_path)
    job = origin.clone(tmp_path / "job")
    trained = git(job, "rev-parse", "HEAD")
    registry = tmp_path / "registry"
    reg = Registry.from_url(str(registry))
    model = build_fixture_model(tmp_path / "model", kind="tabular")
    reg.publish("exp-20260101-000000-abcdef1", model.model_dir, metrics={}, commit=trained)
    reg.move_alias("staging", "exp-20260101-000000-abcdef1", by="ci")
    built = trained if image_commit_of == "tag" else "f" * 40
    done = _run(job, registry, "deploy", "bump", "--image", str(IMAGE), "--commit", built)
    assert done.returncode == 0, done.stderr
    return job, registry, str(origin.path)


def test_promote_moves_prod_alias_and_pins_prods_image_and_a_rerun_is_a_no_op(
    tmp_path: Path,
) -> None:
    job, registry, origin = _staging(tmp_path, "tag")
    done = _run(job, registry, "deploy", "promote")
    assert done.returncode == 0, done.stderr
    reg = Registry.from_url(str(registry))
    assert reg.alias("prod").tag == "exp-20260101-000000-abcdef1"
    prod = tmp_path / "prod.yaml"
    prod.write_text(git(Path(origin), "show", f"main:{PROD}"))
    assert read_image(prod) == IMAGE
    assert "[skip ci]" in git(Path(origin), "log", "-1", "--format=%s", "main")

    head = git(Path(origin), "rev-parse", "main")
    again = _run(job, registry, "deploy", "promote")
    assert again.returncode == 0 and "overlay already pinned" in again.stdout
    assert git(Path(origin), "rev-parse", "main") == head
    assert len(reg.alias_history("prod")) == 1


def test_promote_refuses_a_tag_and_image_from_different_commits(tmp_path: Path) -> None:
    job, registry, origin = _staging(tmp_path, "other")
    head = git(Path(origin), "rev-parse", "main")
    done = _run(job, registry, "deploy", "promote")
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "not" not in done.stdout
    assert "trained on" in done.stderr and "built from ffffffffffff" in done.stderr
    assert git(Path(origin), "rev-parse", "main") == head  # prod overlay untouched
    assert Registry.from_url(str(registry)).alias_history("prod") == []
