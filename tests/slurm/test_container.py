"""env.kind charliecloud on the real cluster: a podman image of the tests' own (not the
example's, not the service's) becomes a Charliecloud image, is staged once per digest, and the
job runs in it with ch-run as the cluster's plain user."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.slurm.script import Layout, render_job_script
from machinery.slurm.settings import SlurmSettings
from tests.slurm.conftest import Cluster, Project
from tests.support.image_build import ImageStorage

Factory = Callable[..., Project]

# The job's interpreter and a package version: the image's venv (pip from Debian's ensurepip
# wheel, 23.0.1) against the node's own python3.
PROBE = (
    "import sys, importlib.metadata as m\n"
    "try:\n    v = m.version('pip')\nexcept m.PackageNotFoundError:\n    v = 'none'\n"
    "print(sys.prefix); print(v)"
)
CONTAINERFILE = """\
FROM localhost/python:3.11-slim-bookworm
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH MLOPS_IMAGE_MARK=from-the-image
"""


@dataclass
class ChTestImage:
    storage: ImageStorage
    reference: str
    cache: Path  # this session's local conversions (the first offload converts)

    def env(self, cluster: Cluster, workdir: str | None = None) -> dict[str, str]:
        env = cluster.env() | {
            "IMAGE_STORAGE_ROOT": str(self.storage.root),
            "IMAGE_RUNROOT": str(self.storage.runroot),
            "MLOPS_SLURM_ENV__KIND": "charliecloud",
            "MLOPS_SLURM_ENV__IMAGE": self.reference,
            "MLOPS_CH_CACHE": str(self.cache),
        }
        if workdir:
            env["MLOPS_SLURM_WORKDIR"] = workdir
        return env


@pytest.fixture(scope="session")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChTestImage]:
    """A small image (the cached Debian base plus a venv): built in seconds once the base and
    the layer cache are there, untagged at the end."""
    storage = ImageStorage.shared_cache()
    storage.ensure_base()
    context = tmp_path_factory.mktemp("ch-image")
    (context / "Containerfile").write_text(CONTAINERFILE)
    reference = f"localhost/mlops-test-charliecloud:{secrets.token_hex(4)}"
    storage.podman(
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "-t",
        reference,
        "-f",
        str(context / "Containerfile"),
        str(context),
        timeout=600,
    )
    storage.built.append(reference)
    try:
        yield ChTestImage(storage, reference, tmp_path_factory.mktemp("ch-cache"))
    finally:
        storage.close()


def _image_dirs(cluster: Cluster, workdir: str) -> list[Path]:
    images = cluster.home_path(workdir[2:]) / "images"
    return sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []


def _probe_here(cluster: Cluster) -> list[str]:
    """The node's own python3, as the job's user sees it outside the container."""
    out = subprocess.run(
        ["runuser", "-u", cluster.info.user, "--", "python3", "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@pytest.mark.integration
def test_the_job_runs_in_the_image_and_a_second_run_reuses_it(
    cluster: Cluster, project_factory: Factory, test_image: ChTestImage
) -> None:
    shell = f'mkdir -p out && python -c "{PROBE}" > out/py.txt && env > out/env.txt'
    first = project_factory(shell)
    proc = first.run(test_image.env(cluster), timeout=600)
    assert proc.returncode == 0, proc.stderr
    prefix, pip = (first.path / "out/py.txt").read_text().split()
    assert prefix == "/opt/venv"  # the image's Python, not the node's
    assert pip == "23.0.1"  # the image's pip (Debian's ensurepip wheel)...
    assert [prefix, pip] != _probe_here(cluster)  # ...not what the node's python3 has
    seen = dict(
        ln.split("=", 1)
        for ln in (first.path / "out/env.txt").read_text().splitlines()
        if "=" in ln
    )
    # What Apptainer's --cleanenv once dropped arrives; the image's own ENV too; the node's
    # environment does not.
    assert seen["MLOPS_CODE_COMMIT"]
    assert seen["PYTHONUNBUFFERED"] == "1"
    assert "/runs/work-" in seen["PYTHONPATH"]
    assert seen["MLOPS_IMAGE_MARK"] == "from-the-image"
    assert "SLURM_JOB_ID" not in seen
    assert "staged container image" in proc.stderr
    record = json.loads(first.report_path.read_text())
    assert record["state"] == "COMPLETED"
    assert record["timings_s"]["image_stage"] > 0

    (image_dir,) = _image_dirs(cluster, cluster.workdir)
    staged_at = (image_dir / ".ready").stat().st_mtime_ns
    second = project_factory(shell)
    proc = second.run(test_image.env(cluster), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "already on the cluster" in proc.stderr
    assert "staged container image" not in proc.stderr and "converted" not in proc.stderr
    assert "image_stage" not in json.loads(second.report_path.read_text())["timings_s"]
    assert _image_dirs(cluster, cluster.workdir) == [image_dir]
    assert (image_dir / ".ready").stat().st_mtime_ns == staged_at  # nothing sent again
    assert (second.path / "out/py.txt").read_text().split()[0] == "/opt/venv"


@pytest.mark.integration
def test_a_changed_staged_image_is_refused_in_one_line(
    cluster: Cluster, project_factory: Factory, test_image: ChTestImage
) -> None:
    # A workdir of its own: the image the other tests use stays intact.
    workdir = f"~/.mlops-test-ch-{secrets.token_hex(3)}"
    env = test_image.env(cluster, workdir)
    try:
        first = project_factory("mkdir -p out && touch out/x")
        proc = first.run(env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        (image_dir,) = _image_dirs(cluster, workdir)
        # A job of the same account edits the shared image (it can undo read-only).
        target = image_dir / "opt/venv/bin/activate"
        target.chmod(0o600)
        with target.open("a") as handle:
            handle.write("echo tampered\n")
        second = project_factory("mkdir -p out && touch out/x")
        proc = second.run(env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith(f"error: the container image {image_dir} changed after")
        assert "manifest mismatch" in lines[-1]
        assert "submitted" not in proc.stderr
        runs = cluster.home_path(workdir[2:]) / "runs"
        assert len([p for p in runs.iterdir() if p.name.startswith("work-")]) == 1  # the first
    finally:
        home = cluster.home_path(workdir[2:])
        subprocess.run(["chmod", "-R", "u+w", str(home)], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.integration
def test_a_missing_image_is_one_line_and_nothing_is_submitted(
    cluster: Cluster, project_factory: Factory, test_image: ChTestImage
) -> None:
    project = project_factory("mkdir -p out && touch out/x")
    env = test_image.env(cluster) | {"MLOPS_SLURM_ENV__IMAGE": "localhost/mlops-no-such:0"}
    proc = project.run(env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: container image localhost/mlops-no-such:0 not found in podman's storage "
        "(env.image): build it (`make image`) or name one that `podman images` lists"
    ]


def test_the_job_script_runs_ch_run_with_the_env_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):  # neither the repo's slurm.yaml nor the shell's settings
        if key.startswith("MLOPS_SLURM_"):
            monkeypatch.delenv(key)
    (tmp_path / "empty.yaml").write_text("{}\n")
    monkeypatch.setenv("MLOPS_SLURM_CONFIG", str(tmp_path / "empty.yaml"))
    settings = SlurmSettings(env={"kind": "charliecloud", "ch_run_args": ["--private-tmp"]})
    layout = Layout("/home/u/.mlops", "train-abc", "n")
    commit = {"MLOPS_CODE_COMMIT": "c0ffee"}
    text = render_job_script(settings, "train", layout, ["python", "-V"], None, commit, "/img/x")
    line = next(ln for ln in text.splitlines() if ln.startswith("ch-run"))
    assert line == (
        "ch-run --unset-env='*' --env-no-expand --set-env --set-env=PYTHONPATH=\"$PYTHONPATH\" "
        '--set-env=PYTHONUNBUFFERED="$PYTHONUNBUFFERED" '
        '--set-env=MLOPS_CODE_COMMIT="$MLOPS_CODE_COMMIT" '
        "--bind=/home/u/.mlops/runs --cd=/home/u/.mlops/runs/train-abc "
        "--private-tmp /img/x -- python -V"
    )
    assert "activate" not in text
    script = tmp_path / "job.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert os.access(shutil.which("ch-run") or "", os.X_OK)  # installed by .ci/install-system


@pytest.mark.integration
def test_images_no_run_used_for_prune_after_days_are_removed(
    cluster: Cluster, project_factory: Factory, test_image: ChTestImage
) -> None:
    images = cluster.home_path(cluster.workdir[2:]) / "images"
    old = images / "0123456789abcdef"
    # An image staged long ago and unused since (read-only, as staging leaves it).
    script = (
        f"mkdir -p {old}/opt && touch {old}.manifest && chmod -R a-w {old} && "
        f"touch -d '8 days ago' {old}.used"
    )
    subprocess.run(["runuser", "-u", cluster.info.user, "--", "bash", "-c", script], check=True)
    project = project_factory("mkdir -p out && touch out/x")
    proc = project.run(test_image.env(cluster), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not old.exists() and not Path(f"{old}.manifest").exists()
    (kept,) = _image_dirs(cluster, cluster.workdir)  # the one this run used stays
    assert (kept / ".ready").is_file()
