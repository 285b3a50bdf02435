"""The example's acceptance on Slurm: ``dvc repro`` with its train stage offloaded over SSH gives
the model of a local run. It trains the example, so it lives with the example's tests (a fork
replaces it); the template's offload tests use tiny commands of their own (tests/slurm/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machinery.modelcard import sha256_file

# The session's local cluster (started once, shared with tests/slurm when both run).
from tests.slurm.conftest import Cluster, cluster  # noqa: F401
from tests.support.workspace import Workspace

pytestmark = [pytest.mark.integration]


def test_dvc_repro_offloaded_train_matches_the_local_run(
    cluster: Cluster, tmp_path: Path  # noqa: F811
) -> None:
    local = Workspace.clone(tmp_path / "local")
    local.run("dvc", "repro", env={"MLOPS_SLURM_TRANSPORT": "none"})

    remote = Workspace.clone(tmp_path / "remote")
    env = {k: v for k, v in cluster.env().items() if k.startswith("MLOPS_SLURM_")}
    proc = remote.run("dvc", "repro", env=env)
    assert "submitted job" in proc.stderr + proc.stdout

    report = json.loads((remote.path / "reports/slurm/train.json").read_text())
    assert report["transport"] == "ssh" and report["source"] == "sacct"
    assert report["state"] == "COMPLETED" and report["job_id"]
    assert report["alloc_cpus"] >= 1 and report["max_rss_bytes"] > 0
    assert report["total_cpu_s"] > 0 and report["cpu_efficiency"] is not None
    # The same code, data and params on the cluster give the same model and metrics.
    assert sha256_file(remote.path / "models/model.onnx") == sha256_file(
        local.path / "models/model.onnx"
    )
    local_metrics = json.loads((local.path / "eval/metrics.json").read_text())
    remote_metrics = json.loads((remote.path / "eval/metrics.json").read_text())
    assert remote_metrics == local_metrics
    local_report = json.loads((local.path / "reports/slurm/train.json").read_text())
    assert local_report["transport"] == "none" and local_report["source"] == "none"
