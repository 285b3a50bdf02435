"""`mlops doctor` against the real local parts: every setting right gives all ✓; each wrong
setting gives its own ✗ line with the fix, and exit code 1."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.doctor.conftest import MLOPS, READ_ONLY_KEY, Doctor, forgejo_env, run_doctor
from tests.slurm.conftest import Cluster
from tests.support.forge_server import (
    FORGEJO_READ_TOKEN,
    FORGEJO_TOKEN,
    GITLAB_READ_TOKEN,
    ForgeServer,
)

pytestmark = pytest.mark.integration

ROWS = [
    "S3: DVC remote",
    "S3: model registry",
    "Slurm: SSH login",
    "Slurm: sbatch --test-only",
    "Slurm: cluster Python",
    "forge: API",
    "forge: comment token",
    "forge: git push",
    "image registry",
    "repository: placeholders",
]


def _only_failure(doctor: Doctor, name: str) -> dict[str, str]:
    """The row ``name`` failed, with a fix, exit code 1 and a ✗ line in the table."""
    assert doctor.rc == 1, doctor.stdout + doctor.stderr
    assert name in doctor.failed(), doctor.report
    row = doctor.row(name)
    assert row["fix"], row
    return row


def test_every_setting_right_gives_all_checks_passed(
    configured: dict[str, str], project: Path
) -> None:
    doctor = run_doctor(configured, project)
    assert doctor.rc == 0, doctor.stdout + doctor.stderr
    assert [r["name"] for r in doctor.report["checks"]] == ROWS
    assert {r["name"]: r["status"] for r in doctor.report["checks"]} == dict.fromkeys(ROWS, "ok")
    assert "Python 3" not in doctor.row("Slurm: cluster Python")["detail"]  # "python3 is 3.x.y"
    assert doctor.row("Slurm: cluster Python")["detail"].startswith("python3 is 3.")
    assert doctor.stderr == ""


def test_the_probe_object_is_removed(
    configured: dict[str, str], project: Path, doctor_s3: object
) -> None:
    run_doctor(configured, project)
    client = doctor_s3.client()  # type: ignore[attr-defined]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="doctor").get("Contents", [])]
    assert not [k for k in keys if ".mlops-doctor-" in k]


def test_table_marks_and_fix_line(configured: dict[str, str], project: Path) -> None:
    env = configured | {"AWS_SECRET_ACCESS_KEY": "wrong-" + uuid.uuid4().hex}
    proc = subprocess.run(
        [MLOPS, "doctor"], env=env, cwd=project, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    bad = next(i for i, ln in enumerate(lines) if ln.startswith("✗ S3: DVC remote"))
    assert "rejected the credentials" in lines[bad]
    assert "fix: set valid AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in lines[bad + 1]
    assert any(ln.startswith("✓ Slurm: SSH login") for ln in lines)


def test_wrong_s3_key(configured: dict[str, str], project: Path) -> None:
    env = configured | {"AWS_ACCESS_KEY_ID": "nobody-" + uuid.uuid4().hex[:8]}
    row = _only_failure(run_doctor(env, project), "S3: DVC remote")
    assert "rejected the credentials (InvalidAccessKeyId)" in row["detail"]


def test_read_only_s3_key(configured: dict[str, str], project: Path, doctor_s3: object) -> None:
    secret = next(
        c["secretKey"]
        for i in doctor_s3.extra_identities  # type: ignore[attr-defined]
        for c in i["credentials"]
    )
    env = configured | {"AWS_ACCESS_KEY_ID": READ_ONLY_KEY, "AWS_SECRET_ACCESS_KEY": secret}
    doctor = run_doctor(env, project)
    row = _only_failure(doctor, "S3: DVC remote")
    assert "may read bucket 'doctor' but not write it" in row["detail"]
    assert "write and delete access to s3://doctor/dvcstore" in row["fix"]


def test_missing_bucket(configured: dict[str, str], project: Path) -> None:
    env = configured | {"MLOPS_REGISTRY_URL": "s3://no-such-bucket/registry"}
    doctor = run_doctor(env, project)
    row = _only_failure(doctor, "S3: model registry")
    assert "bucket 'no-such-bucket' does not exist" in row["detail"]
    assert doctor.failed() == ["S3: model registry"]


def test_unknown_host_key(configured: dict[str, str], project: Path, tmp_path: Path) -> None:
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    port = configured["MLOPS_SLURM_SSH_PORT"]
    env = configured | {"MLOPS_SLURM_SSH_KNOWN_HOSTS": f"[127.0.0.1]:{port} {kind} {blob}"}
    doctor = run_doctor(env, project)
    row = _only_failure(doctor, "Slurm: SSH login")
    assert "does not match MLOPS_SLURM_SSH_KNOWN_HOSTS" in row["detail"]
    assert "ssh-keyscan" in row["fix"]
    assert doctor.row("Slurm: sbatch --test-only")["status"] == "skip"


def test_host_not_pinned_at_all(configured: dict[str, str], project: Path) -> None:
    pinned = configured["MLOPS_SLURM_SSH_KNOWN_HOSTS"]
    env = configured | {"MLOPS_SLURM_SSH_KNOWN_HOSTS": "[10.9.9.9]:22 " + pinned.split(" ", 1)[1]}
    row = _only_failure(run_doctor(env, project), "Slurm: SSH login")
    assert "not found in known_hosts" in row["detail"]


def test_wrong_ssh_key(configured: dict[str, str], project: Path, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    text = key.read_text()
    env = {k: v for k, v in configured.items() if k != "MLOPS_SLURM_SSH_KEY_FILE"}
    doctor = run_doctor(env | {"MLOPS_SLURM_SSH_KEY": text}, project)
    row = _only_failure(doctor, "Slurm: SSH login")
    assert "refused for this key" in row["detail"]
    assert "authorized_keys" in row["fix"]
    for line in text.splitlines()[1:-1]:  # the key's body never shows
        assert line not in doctor.stdout + doctor.stderr


def test_bad_partition(configured: dict[str, str], project: Path) -> None:
    env = configured | {"MLOPS_SLURM_JOB__PARTITION": "nosuch"}
    doctor = run_doctor(env, project)
    row = _only_failure(doctor, "Slurm: sbatch --test-only")
    assert "invalid partition specified: nosuch" in row["detail"]
    assert "job.partition" in row["fix"]
    assert doctor.failed() == ["Slurm: sbatch --test-only"]


def test_cluster_python_that_does_not_run(configured: dict[str, str], project: Path) -> None:
    env = configured | {"MLOPS_SLURM_ENV__PYTHON": "python3.nosuch"}
    row = _only_failure(run_doctor(env, project), "Slurm: cluster Python")
    assert row["detail"].startswith("python3.nosuch does not run on the cluster")
    assert "MLOPS_SLURM_ENV__PYTHON" in row["fix"]


def test_cluster_python_too_old(configured: dict[str, str], project: Path) -> None:
    # An interpreter that says 3.9, where the login user can run it (pytest's tmp is 0700).
    where = Path(tempfile.mkdtemp(prefix="doctor-python-", dir="/tmp"))
    try:
        old = where / "python3.9"
        old.write_text("#!/bin/sh\necho 3.9.18\n")
        where.chmod(0o755)
        old.chmod(0o755)
        row = _only_failure(
            run_doctor(configured | {"MLOPS_SLURM_ENV__PYTHON": str(old)}, project),
            "Slurm: cluster Python",
        )
        assert row["detail"] == f"{old} on the cluster is 3.9.18, the pipeline needs 3.11+"
    finally:
        shutil.rmtree(where)


def test_transport_local_runs_sbatch_here(
    configured: dict[str, str], project: Path, cluster: Cluster
) -> None:
    env = {k: v for k, v in configured.items() if not k.startswith("MLOPS_SLURM_")}
    doctor = run_doctor(env | cluster.info.local_env(), project)
    assert doctor.row("Slurm: sbatch on this host")["status"] == "ok", doctor.report
    assert doctor.row("Slurm: sbatch --test-only")["status"] == "ok", doctor.report


@pytest.mark.parametrize("flavour", ["gitlab", "forgejo"])
def test_token_without_note_scope(
    configured: dict[str, str],
    project: Path,
    forge_server: ForgeServer,
    tmp_path: Path,
    flavour: str,
) -> None:
    if flavour == "gitlab":
        env = configured | {"MLOPS_COMMENT_TOKEN": GITLAB_READ_TOKEN}
        scope_said = "scopes read_api: writing merge request notes needs api"
    else:
        env = forgejo_env(configured, forge_server, tmp_path / "event.json", FORGEJO_READ_TOKEN)
        scope_said = "may not write comments (403"
    doctor = run_doctor(env, project)
    row = _only_failure(doctor, "forge: comment token")
    assert scope_said in row["detail"]
    assert doctor.failed() == ["forge: comment token"]
    # Nothing was written on the forge.
    assert not [r for r in forge_server.requests() if r["status"] < 300 and r["method"] != "GET"]


def test_forgejo_configured_passes(
    configured: dict[str, str], project: Path, forge_server: ForgeServer, tmp_path: Path
) -> None:
    env = forgejo_env(configured, forge_server, tmp_path / "event.json", FORGEJO_TOKEN)
    doctor = run_doctor(env, project)
    assert doctor.rc == 0, doctor.report
    assert forge_server.forgejo_comments() == []
    pushed = [r for r in forge_server.requests() if r["path"].endswith(".git/info/refs")]
    assert pushed and pushed[0]["query"] == {"service": "git-receive-pack"}


def test_git_token_that_may_not_push(
    configured: dict[str, str], project: Path, forge_server: ForgeServer
) -> None:
    doctor = run_doctor(configured | {"MLOPS_GIT_TOKEN": GITLAB_READ_TOKEN}, project)
    row = _only_failure(doctor, "forge: git push")
    assert "the forge refused MLOPS_GIT_TOKEN the push (403)" in row["detail"]
    assert "write_repository" in row["fix"]
    assert doctor.failed() == ["forge: git push"]


def test_wrong_registry_password(configured: dict[str, str], project: Path) -> None:
    env = configured | {"IMAGE_REGISTRY_PASSWORD": "wrong-" + uuid.uuid4().hex}
    row = _only_failure(run_doctor(env, project), "image registry")
    assert "refused the login of 'pusher' (401)" in row["detail"]
    assert "IMAGE_REGISTRY_PASSWORD" in row["fix"]


def test_placeholder_left(configured: dict[str, str], project: Path) -> None:
    overlay = project / "k8s" / "overlays" / "staging" / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "# FILL IN: the ingress host\n")
    zero = project / "k8s" / "overlays" / "prod" / "kustomization.yaml"
    zero.parent.mkdir()
    zero.write_text("images:\n  - name: inference\n    digest: sha256:" + "0" * 64 + "\n")
    doctor = run_doctor(configured, project)
    row = _only_failure(doctor, "repository: placeholders")
    assert "k8s/overlays/prod/kustomization.yaml:3 (all-zero digest)" in row["detail"]
    assert "k8s/overlays/staging/kustomization.yaml:8 (FILL IN)" in row["detail"]
    assert doctor.failed() == ["repository: placeholders"]


def test_no_secret_is_ever_printed(configured: dict[str, str], project: Path) -> None:
    """Every secret wrong (so each check fails on it, and the push URL even carries the git
    token, as a careless MLOPS_GIT_PUSH_URL would), then every secret right: none shows."""
    wrong = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-" + uuid.uuid4().hex,
        "MLOPS_COMMENT_TOKEN": "comment-secret-" + uuid.uuid4().hex,
        "MLOPS_GIT_TOKEN": "git-secret-" + uuid.uuid4().hex,
        "IMAGE_REGISTRY_PASSWORD": "registry-secret-" + uuid.uuid4().hex,
    }
    wrong_env = configured | wrong
    wrong_env["MLOPS_GIT_PUSH_URL"] = f"http://oauth2:{wrong['MLOPS_GIT_TOKEN']}@127.0.0.1:9/p.git"
    failing = ["S3: DVC remote", "forge: comment token", "forge: git push", "image registry"]
    for env, rc in ((wrong_env, 1), (configured, 0)):
        for args in ((), ("--json",)):
            proc = subprocess.run(
                [MLOPS, "doctor", *args], env=env, cwd=project, capture_output=True, text=True
            )
            assert proc.returncode == rc, proc.stdout + proc.stderr
            if rc == 1 and not args:
                assert all(f"✗ {name}" in proc.stdout for name in failing), proc.stdout
                assert "***" in proc.stdout  # the push URL's token, masked
            for name in wrong:
                assert env[name] not in proc.stdout + proc.stderr, name
