"""`mlops doctor` on a fully wrong configuration: how long until every row is in.

    make bench-doctor

Two configurations, every service wrong:
- closed: every host is 127.0.0.1 on a port nothing listens on (connection refused at once),
  the keys and tokens are made up;
- silent: every host is a local socket that accepts connections and never answers (what a
  firewall that drops packets, or a hung server, looks like): each check runs into its own
  timeout.
Prints the wall time of the whole command (target: under 15 s) and each check's seconds.
Writes bench/results/doctor.json. No server is needed; nothing runs as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MLOPS = str(Path(sys.executable).parent / "mlops")
TARGET_S = 15.0
FOREIGN = ("MLOPS_", "AWS_", "DVC_", "IMAGE_", "CI_", "GITHUB_", "GITLAB_", "FORGEJO_", "SLURM_")


@contextmanager
def ports(kind: str, count: int) -> Iterator[list[int]]:
    """``closed``: ports nothing listens on; ``silent``: listening sockets nobody serves."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    numbers = [s.getsockname()[1] for s in socks]
    if kind == "closed":
        for sock in socks:
            sock.close()
    else:
        for sock in socks:
            sock.listen(64)  # the kernel completes the handshakes; nobody ever reads
    try:
        yield numbers
    finally:
        for sock in socks:
            sock.close()


def wrong_env(project: Path, ports: list[int]) -> dict[str, str]:
    s3, ssh, forge, registry = ports
    key = project / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host_key = (project / "id_ed25519.pub").read_text().split()[:2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env.update(
        {
            "AWS_CONFIG_FILE": str(project / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(project / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
            "AWS_ACCESS_KEY_ID": "wrong-key",
            "AWS_SECRET_ACCESS_KEY": "wrong-secret",
            "DVC_REMOTE_URL": "s3://bucket/dvcstore",
            "MLOPS_REGISTRY_URL": "s3://bucket/registry",
            "MLOPS_SLURM_TRANSPORT": "ssh",
            "MLOPS_SLURM_SSH_HOST": "127.0.0.1",
            "MLOPS_SLURM_SSH_PORT": str(ssh),
            "MLOPS_SLURM_SSH_USER": "nobody",
            "MLOPS_SLURM_SSH_KEY_FILE": str(key),
            "MLOPS_SLURM_SSH_KNOWN_HOSTS": f"[127.0.0.1]:{ssh} {' '.join(host_key)}",
            "GITLAB_CI": "true",
            "CI_SERVER_URL": f"http://127.0.0.1:{forge}",
            "CI_PROJECT_ID": "7",
            "MLOPS_COMMENT_TOKEN": "wrong-token",
            "MLOPS_GIT_TOKEN": "wrong-token",
            "CI_PROJECT_PATH": "group/project",
            "IMAGE_NAME": f"127.0.0.1:{registry}/team/inference",
            "IMAGE_REGISTRY_USER": "nobody",
            "IMAGE_REGISTRY_PASSWORD": "wrong-password",
            "IMAGE_REGISTRY_INSECURE": "1",
        }
    )
    return env


def measure(kind: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp, ports(kind, 4) as numbers:
        project = Path(tmp)
        shutil.copytree(REPO / "k8s", project / "k8s")  # the template's own placeholders
        git = ["git", "-C", str(project), "-c", "user.name=b", "-c", "user.email=b@localhost"]
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        subprocess.run([*git, "add", "k8s"], check=True)
        subprocess.run([*git, "commit", "-qm", "k8s"], check=True)  # HEAD, for the push check
        env = wrong_env(project, numbers)
        started = time.monotonic()
        proc = subprocess.run(
            [MLOPS, "doctor", "--json"], env=env, cwd=project, capture_output=True, text=True
        )
        wall = time.monotonic() - started
    report = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 2),
        "exit_code": proc.returncode,
        "checks": {r["name"]: [r["status"], r["seconds"]] for r in report["checks"]},
    }


def main() -> None:
    results = {kind: measure(kind) for kind in ("closed", "silent")}
    for kind, result in results.items():
        verdict = "ok" if result["wall_s"] < TARGET_S else "OVER"
        print(
            f"mlops doctor, every service wrong ({kind}): {result['wall_s']:.2f} s wall "
            f"(target < {TARGET_S:.0f} s: {verdict}), exit code {result['exit_code']}"
        )
        for name, (status, seconds) in result["checks"].items():
            print(f"  {name:<28} {status:<5} {seconds:6.2f} s")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "doctor.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
