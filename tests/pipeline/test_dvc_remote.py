"""The DVC remote on a real S3 server (SeaweedFS, credentials enforced), configured like MinIO."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.s3 import S3Server
from tests.support.workspace import Workspace


def use_s3_remote(ws: Workspace, server: S3Server, bucket: str) -> dict[str, str]:
    """The README's two commands; the credentials stay in the environment, never in git."""
    ws.dvc("remote", "add", "-d", "s3", f"s3://{bucket}/dvcstore")
    ws.dvc("remote", "modify", "s3", "endpointurl", server.endpoint_url)
    return {k: v for k, v in server.env.items() if k != "AWS_ENDPOINT_URL"}


def outputs(ws: Workspace) -> list[Path]:
    return [ws.path / "data/prepared", ws.path / "models/model.onnx", ws.path / "eval/plots/images"]


@pytest.mark.integration
def test_push_wipe_pull_round_trip(
    workspace: Workspace, s3_server: S3Server, s3_bucket: str
) -> None:
    creds = use_s3_remote(workspace, s3_server, s3_bucket)
    assert s3_server.secret_key not in (workspace.path / ".dvc/config").read_text()
    workspace.run("dvc", "push", env=creds)
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="dvcstore/")
    assert listed["KeyCount"] > 0

    shutil.rmtree(workspace.path / ".dvc/cache")
    for path in outputs(workspace):
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    workspace.run("dvc", "pull", env=creds)
    assert all(path.exists() for path in outputs(workspace))
    assert "Data and pipelines are up to date" in workspace.dvc("status").stdout
    assert workspace.stages_run(workspace.dvc("repro").stdout) == []


@pytest.mark.integration
def test_run_cache_restores_stages_in_a_fresh_clone_without_running_them(
    workspace: Workspace, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    creds = use_s3_remote(workspace, s3_server, s3_bucket)
    workspace.git("add", "-A")
    workspace.git("commit", "-q", "-m", "results and S3 remote")
    workspace.run("dvc", "push", "--run-cache", env=creds)

    expected = (workspace.path / "models/model.onnx").read_bytes()
    for name, drop_lock in (("with-lock", False), ("without-lock", True)):
        fresh = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(workspace.path), str(fresh)], check=True)
        clone = Workspace(fresh)
        assert not (fresh / ".dvc/cache").exists() and not (fresh / "models/model.onnx").exists()
        if drop_lock:
            # No lock describing the outputs: only the run-cache can tell these were computed.
            (fresh / "dvc.lock").unlink()

        out = clone.run("dvc", "repro", "--pull", env=creds).stdout
        assert clone.stages_run(out) == [], out
        if drop_lock:
            assert out.count("is cached - skipping run") == 4, out
        assert (fresh / "models/model.onnx").read_bytes() == expected


@pytest.mark.integration
def test_s3_down_is_one_readable_error(workspace: Workspace, private_s3_server: S3Server) -> None:
    bucket = private_s3_server.make_bucket()
    creds = use_s3_remote(workspace, private_s3_server, bucket)
    private_s3_server.stop()
    creds["AWS_MAX_ATTEMPTS"] = "1"  # the user sees the same message, sooner

    for cmd in (("dvc", "push"), ("dvc", "pull")):
        proc = workspace.run(*cmd, check=False, env=creds)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr + proc.stdout
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        # The first line says what is wrong and where; pull adds a one-line summary after it.
        assert 1 <= len(errors) <= 2, proc.stderr
        assert "Could not connect to the endpoint URL" in errors[0]
        assert private_s3_server.endpoint_url in errors[0]
