"""``mlops deploy promote``: prod gets staging's tag and image in one step, or nothing at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from machinery.deploy.overlay import ImageRef, read_image
from machinery.registry.registry import Registry
from tests.ci.gitrepo import git, git_env, make_origin
from tests.support.fixture_models import build_fixture_model

pytestmark = pytest.mark.integration

MLOPS = str(Path(sys.executable).parent / "mlops")
PROD = "k8s/overlays/prod/kustomization.yaml"
IMAGE = ImageRef("127.0.0.1:5000/group/project/inference", "sha256:" + "5e" * 32)


def _run(cwd: Path, registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = git_env(MLOPS_REGISTRY_URL=str(registry), IMAGE_NAME=IMAGE.name)
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
    assert "deploy/prod already at" in again.stdout
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


def _prod_revision(origin: Path) -> str:
    """The commit prod's Argo CD Application deploys from: its targetRevision, resolved."""
    app = yaml.safe_load(git(origin, "show", "main:k8s/argocd/application-prod.yaml"))
    return git(origin, "rev-parse", app["spec"]["source"]["targetRevision"] + "^{commit}")


def test_prod_moves_only_on_promotion_not_with_a_change_on_main(tmp_path: Path) -> None:
    job, registry, origin_path = _staging(tmp_path, "tag")
    origin = Path(origin_path)
    first = _run(job, registry, "deploy", "promote")
    assert first.returncode == 0, first.stderr
    promoted = _prod_revision(origin)
    assert promoted == git(origin, "rev-parse", "main")
    assert "deploy/prod moved to" in first.stdout

    # A change to k8s/base lands on main (and, with it, staging): prod's revision stays put.
    dev = tmp_path / "dev"
    git(tmp_path, "clone", "-q", str(origin), dev.name)
    base = dev / "k8s/base/deployment.yaml"
    base.write_text(base.read_text().replace("revisionHistoryLimit: 5", "revisionHistoryLimit: 4"))
    git(dev, "commit", "-q", "-am", "base: keep fewer ReplicaSets")
    git(dev, "push", "-q", "origin", "main")
    changed = git(origin, "rev-parse", "main")
    assert _prod_revision(origin) == promoted
    assert "revisionHistoryLimit: 5" in git(origin, "show", f"{promoted}:k8s/base/deployment.yaml")
    staging = yaml.safe_load(git(origin, "show", "main:k8s/argocd/application-staging.yaml"))
    assert staging["spec"]["source"]["targetRevision"] == "main"  # staging does follow main

    # A new model and image from that commit reach staging by the CI bump: prod still stays.
    reg = Registry.from_url(str(registry))
    model = build_fixture_model(tmp_path / "model2", kind="tabular")
    reg.publish("exp-20260102-000000-abcdef2", model.model_dir, metrics={}, commit=changed)
    reg.move_alias("staging", "exp-20260102-000000-abcdef2", by="ci")
    newer = ImageRef(IMAGE.name, "sha256:" + "7a" * 32)
    bumped = _run(job, registry, "deploy", "bump", "--image", str(newer), "--commit", changed)
    assert bumped.returncode == 0, bumped.stderr
    assert _prod_revision(origin) == promoted

    # Promotion moves prod to main's tip: the base change and staging's new image, together.
    second = _run(job, registry, "deploy", "promote")
    assert second.returncode == 0, second.stderr
    now = _prod_revision(origin)
    assert now == git(origin, "rev-parse", "main") and now != promoted
    assert "revisionHistoryLimit: 4" in git(origin, "show", f"{now}:k8s/base/deployment.yaml")
    prod = tmp_path / "prod.yaml"
    prod.write_text(git(origin, "show", f"{now}:{PROD}"))
    assert read_image(prod) == newer
    assert reg.alias("prod").tag == "exp-20260102-000000-abcdef2"
