"""Wall time of the GitLab pipelines on gitlab-ci-local (printed, not asserted).

    make bench-ci          (root: starts SeaweedFS, a local Slurm + sshd, a forge, a registry)

On the CI tests' small fixture project (tests/ci/pipelines.py), with the shell executor:
1. the merge-request pipeline, cold: lint (mypy without a cache), the DVC pipeline with train
   offloaded over SSH to the local Slurm, the sticky comment;
2. the same pipeline again on the same commit: the no-op rerun (every stage restored from the
   run-cache, no Slurm job; target: under a minute);
3. the main pipeline after a merge: lint, pipeline (run-cache), tag + publish to S3, image build
   (the image tests' shared layer cache) + push to docker-registry, deploy bump to a bare origin.
Numbers on a shared 2-core machine are noisy: compare runs taken at the same time.
Writes bench/results/ci.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from machinery.slurm.localcluster.cluster import LocalCluster  # noqa: E402
from tests.ci.pipelines import VENV, GitLabCI, GitLabRun, make_ci_project  # noqa: E402
from tests.support.forge_server import ForgeServer  # noqa: E402
from tests.support.image_build import ImageStorage  # noqa: E402
from tests.support.oci_registry import OciRegistry  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402


def job_seconds(run: GitLabRun) -> dict[str, str]:
    """``<job> finished in <time>`` lines of gitlab-ci-local, per job. The whole pipeline's own
    line looks like a job named ``pipeline`` and comes after the job's: keep the first."""
    out: dict[str, str] = {}
    for line in run.output.splitlines():
        job, found, rest = line.partition(" finished in ")
        if found and job.strip() != "parsing and downloads":
            out.setdefault(job.strip(), rest.split("  ")[0].strip())
    return out


def timed(label: str, results: dict[str, object], ci: GitLabCI, **kwargs: object) -> None:
    start = time.monotonic()
    run = ci.run(**kwargs)  # type: ignore[arg-type]
    seconds = time.monotonic() - start
    ok = run.proc.returncode == 0
    results[label] = {"seconds": round(seconds, 1), "ok": ok, "jobs": job_seconds(run)}
    print(f"{label:<28} {seconds:7.1f} s  {'ok' if ok else 'FAILED'}  {job_seconds(run)}")
    if not ok:
        print(run.output[-3000:])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-ci-", dir="/tmp"))
    s3 = S3Server(root / "s3")
    cluster = LocalCluster(root / "slurm", cpus=max(2, os.cpu_count() or 1))
    forge = ForgeServer(root / "forge")
    registry = OciRegistry(root / "oci")
    storage = ImageStorage.shared_cache()
    results: dict[str, object] = {}
    try:
        os.chmod(root, 0o755)  # the login user reaches the munge socket under it
        s3.start()
        info = cluster.up()
        forge.start()
        registry.start()
        storage.ensure_base()
        bucket = s3.make_bucket()
        ws, _ = make_ci_project(root / "project", root / "origin.git")
        variables = {
            "VENV": str(VENV),
            "DVC_REMOTE_URL": f"s3://{bucket}/dvcstore",
            "MLOPS_REGISTRY_URL": f"s3://{bucket}/registry",
            **s3.env,
            **info.env(),
            "MLOPS_SLURM_WORKDIR": "~/.mlops-bench-ci",
            **forge.gitlab_env(),
            "MLOPS_COMMENT_FORGE": "gitlab",
            "MYPY_CACHE_DIR": str(root / "mypy-cache"),
        }
        ci = GitLabCI(ws.path, root / "gcl-home", variables)
        ws.git("checkout", "-q", "-b", "feature")
        ws.set_param("train.estimator", "tree")
        ws.git("commit", "-q", "-am", "try a tree")
        timed("merge-request pipeline", results, ci, merge_request=True)
        timed("no-op rerun", results, ci, merge_request=True)
        ws.git("checkout", "-q", "main")
        ws.git("merge", "-q", "--ff-only", "feature")
        ws.git("push", "-q", "origin", "main")
        image = {
            **{k: v for k, v in storage.env().items() if k.startswith(("IMAGE_", "PYTHON_"))},
            "IMAGE_NAME": f"{registry.host}/group/project/inference",
            "IMAGE_REGISTRY_INSECURE": "1",
        }
        timed("main pipeline", results, ci, extra=image)
    finally:
        storage.close()
        registry.stop()
        forge.stop()
        cluster.down()
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ci.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
