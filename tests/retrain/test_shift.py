"""The data shift a retrain sees: a project whose labelled data is a ``dvc import-url`` of an
S3 prefix (the real SeaweedFS). A retrain run (``make pipeline``/``make restore``'s
``mlops retrain update-imports``, then ``dvc repro``, then ``mlops retrain publish``) with no new
rows under the prefix ends at "No new model"; new rows under it reach the stage, retrain the
model and publish a new ``retrain-`` tag to ``staging``, never ``prod``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from machinery.registry.errors import AliasNotFound
from machinery.registry.registry import Registry
from tests.support.fixture_models import SIDE
from tests.support.s3 import S3Server, use_s3_env
from tests.support.workspace import GIT_IDENTITY, assert_one_line_error

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = {
    "MLOPS_RETRAIN_REASON": "LiveAccuracyBelowCard firing in mlops-prod: live accuracy 0.62",
    "MLOPS_RETRAIN_ALERT": "LiveAccuracyBelowCard",
}


def rows(label: str, n: int, offset: int) -> str:
    """``n`` labelled 6×6 pictures unlike the fixture's (a corner block), as CSV lines."""
    lines = []
    for i in range(n):
        pixels = [0.0] * (SIDE * SIDE)
        for j in range(1 + (i + offset) % 3):
            pixels[j * SIDE + (i + offset) % SIDE] = 1.0
        lines.append(",".join(f"{p:g}" for p in pixels) + f",{label}")
    return "\n".join(lines) + "\n"


class Project:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path, self.env = path, env

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def retrain(self) -> str:
        """What the retrain run does, in its order; its output."""
        update = self.run(str(BIN / "mlops"), "retrain", "update-imports").stdout
        repro = self.run(str(BIN / "dvc"), "repro").stdout
        publish = self.run(str(BIN / "mlops"), "retrain", "publish").stdout
        return update + repro + publish

    def tags(self) -> list[str]:
        return self.run("git", "tag", "-l").stdout.split()


def test_new_rows_under_the_imported_prefix_retrain_and_publish_to_staging(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = s3_server.client()
    bucket = s3_server.make_bucket()
    # A versioned bucket, as docs/retraining.md advises: the .dvc file records version ids.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="labelled/2026-12-01.csv", Body=rows("dot", 6, 0).encode())
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    path = tmp_path / "project"
    path.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_", "DVC_"))},
        **s3_server.env,
        **REASON,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "MLOPS_REGISTRY_URL": f"s3://{bucket}/registry",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        **GIT_IDENTITY,
    }
    project = Project(path, env)
    project.run("git", "init", "-q", "-b", "main")
    project.run(str(BIN / "dvc"), "init", "-q")
    (path / "data").mkdir()
    project.run(
        str(BIN / "dvc"),
        "import-url",
        "--version-aware",
        f"s3://{bucket}/labelled/",
        "data/incoming",
    )
    assert "version_id" in (path / "data/incoming.dvc").read_text()
    stages = {
        "train": {
            "cmd": "python -m tests.retrain.shift_stage",
            "deps": ["data/incoming"],
            "outs": ["models/model.onnx", "models/model_card.json"],
            "metrics": [{"eval/metrics.json": {"cache": False}}],
        }
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    project.run(str(BIN / "dvc"), "repro", "-q")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "labelled data from S3")
    project.run("git", "remote", "add", "origin", str(origin))
    project.run("git", "push", "-q", "origin", "main")
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url(env["MLOPS_REGISTRY_URL"])

    # The first retrain: staging had nothing, so the model goes there.
    first_out = project.retrain()
    assert "imports: data/incoming.dvc unchanged" in first_out
    (first,) = project.tags()
    assert f"Published `{first}`" in first_out
    first_sha = registry.meta(first).sha256

    # Alert again, nothing new under the prefix: the same model, nothing published.
    again = project.retrain()
    assert "imports: data/incoming.dvc unchanged" in again
    assert "No new model" in again
    assert project.tags() == [first]

    # New labelled rows land under the prefix: the next retrain sees them.
    s3.put_object(Bucket=bucket, Key="labelled/2026-12-05.csv", Body=rows("bar", 9, 1).encode())
    shifted = project.retrain()
    assert "imports: updated data/incoming.dvc" in shifted
    assert "Running stage 'train'" in shifted and "train: 15 incoming rows" in shifted
    (second,) = set(project.tags()) - {first}
    assert f"Published `{second}` and moved `staging` to it (was `{first}`)" in shifted
    staging = registry.alias("staging")
    assert staging.tag == second and staging.moved_by == "retrain: LiveAccuracyBelowCard"
    assert registry.meta(second).sha256 != first_sha
    with pytest.raises(AliasNotFound):
        registry.alias("prod")
    assert set(
        project.run("git", "ls-remote", "--tags", "--refs", str(origin)).stdout.split()[1::2]
    ) == {
        f"refs/tags/{first}",
        f"refs/tags/{second}",
    }


def test_a_source_the_run_cannot_read_fails_it_with_one_line(
    s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = s3_server.client()
    bucket = s3_server.make_bucket()
    s3.put_object(Bucket=bucket, Key="labelled/a.csv", Body=rows("dot", 2, 0).encode())
    path = tmp_path / "project"
    (path / "data").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_", "DVC_"))},
        **s3_server.env,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
    project = Project(path, env)
    project.run("git", "init", "-q", "-b", "main")
    project.run(str(BIN / "dvc"), "init", "-q")
    project.run(str(BIN / "dvc"), "import-url", f"s3://{bucket}/labelled/", "data/incoming")
    project.run("git", "add", "-A")
    # The prefix's owner took the read key away (here: the key is wrong from now on).
    project.env = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-key"}
    proc = project.run(str(BIN / "mlops"), "retrain", "update-imports", check=False)
    assert_one_line_error(proc, "dvc update data/incoming.dvc")
