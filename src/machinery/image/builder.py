"""Build, push and record the image with buildah: no daemon, works in an unprivileged job.

Every knob is an environment variable so CI jobs stay one line (docs/image.md lists them):
``IMAGE_STORAGE_ROOT`` / ``IMAGE_RUNROOT`` / ``IMAGE_STORAGE_DRIVER`` (containers-storage
location), ``PYTHON_IMAGE`` (base image), ``IMAGE_CA_BUNDLE`` (trust a TLS-intercepting proxy
during the build, never baked in).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.image.target import ImageTarget

DOCKERFILE = Path("service/Dockerfile")
DEFAULT_RECORD = Path("reports/image.json")
CA_IN_BUILD = "/etc/ssl/certs/ca-certificates.crt"


class ImageBuildError(UserError):
    exit_code = 3


@dataclass(frozen=True)
class Builder:
    """buildah and the containers-storage it works in (podman reads the same storage)."""

    root: str | None = None
    runroot: str | None = None
    driver: str | None = None
    tool: str = "buildah"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Builder:
        return cls(
            env.get("IMAGE_STORAGE_ROOT") or None,
            env.get("IMAGE_RUNROOT") or None,
            env.get("IMAGE_STORAGE_DRIVER") or None,
        )

    def base(self) -> list[str]:
        if shutil.which(self.tool) is None:
            raise ImageBuildError(
                f"{self.tool} not found: install it (Debian: apt-get install {self.tool}; "
                "GitLab/Forgejo: run the job in quay.io/buildah/stable)"
            )
        cmd = [self.tool]
        for flag, value in (
            ("--root", self.root),
            ("--runroot", self.runroot),
            ("--storage-driver", self.driver),
        ):
            if value:
                cmd += [flag, value]
        return cmd

    def run(self, *args: str, what: str, stdin: str | None = None) -> None:
        """Run the tool with its output going to the job log; one line if it fails."""
        cmd = self.base() + list(args)
        result = subprocess.run(cmd, input=stdin, text=True)
        if result.returncode != 0:
            raise ImageBuildError(
                f"{self.tool} {what} failed (exit {result.returncode}): see above"
            )


def build_args(
    target: ImageTarget, env: Mapping[str, str], context: Path, iidfile: Path
) -> list[str]:
    """The ``build`` arguments: chroot isolation and docker format work unprivileged and keep
    HEALTHCHECK (the OCI format drops it)."""
    args = [
        "build",
        "--isolation",
        env.get("BUILDAH_ISOLATION", "chroot"),
        "--format",
        "docker",
        "--layers",
        "--iidfile",
        str(iidfile),
        "-f",
        str(context / DOCKERFILE),
        "-t",
        target.reference,
        "--label",
        f"org.opencontainers.image.revision={target.commit}",
        "--label",
        f"org.opencontainers.image.version={target.tag}",
    ]
    source = _source_url(env)
    if source:
        args += ["--label", f"org.opencontainers.image.source={source}"]
    python_image = env.get("PYTHON_IMAGE")
    if python_image:
        args += ["--build-arg", f"PYTHON_IMAGE={python_image}"]
        if python_image.startswith("localhost/"):
            args.append("--pull=never")  # a locally made base image is in no registry
    return args + [str(context)]


def build(target: ImageTarget, builder: Builder, env: Mapping[str, str], context: Path) -> str:
    """Build ``service/Dockerfile`` as ``target.reference``; returns the image ID."""
    if not (context / DOCKERFILE).is_file():
        raise ImageBuildError(f"{context / DOCKERFILE} not found: run from the repository root")
    with tempfile.TemporaryDirectory(prefix="mlops-image-") as tmp:
        iidfile = Path(tmp) / "iid"
        args = build_args(target, env, context, iidfile)
        bundle = env.get("IMAGE_CA_BUNDLE")
        if bundle:
            args[-1:-1] = _trust_mounts(Path(bundle), Path(tmp))
        builder.run(*args, what="build")
        return iidfile.read_text().strip()


def push(target: ImageTarget, builder: Builder) -> str:
    """Push ``target.reference``; returns the manifest digest the registry stores (sha256:…)."""
    with tempfile.TemporaryDirectory(prefix="mlops-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        tls = [] if target.tls_verify else ["--tls-verify=false"]
        auth: list[str] = []
        if target.user and target.password:
            # A throw-away auth file: credentials never land in ~/.docker or the job's home.
            authfile = Path(tmp) / "auth.json"
            auth = ["--authfile", str(authfile)]
            builder.run(
                "login",
                *auth,
                *tls,
                "--username",
                target.user,
                "--password-stdin",
                target.registry,
                what=f"login to {target.registry}",
                stdin=target.password,
            )
        builder.run(
            "push",
            *auth,
            *tls,
            "--digestfile",
            str(digestfile),
            target.reference,
            f"docker://{target.reference}",
            what=f"push to {target.registry}",
        )
        digest = digestfile.read_text().strip()
    if not digest.startswith("sha256:"):
        raise ImageBuildError(f"{builder.tool} push wrote no digest (got {digest!r})")
    return digest


def record(target: ImageTarget, digest: str, path: Path) -> dict[str, Any]:
    """Write what the deploy bump pins: name, tag, digest (and the commit it was built from)."""
    data: dict[str, Any] = {
        "name": target.name,
        "tag": target.tag,
        "digest": digest,
        "reference": f"{target.name}@{digest}",
        "commit": target.commit,
        "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temp, path)
    return data


def read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: run `make image` first") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    missing = {"name", "tag", "digest"} - set(data)
    if missing:
        raise UserError(f"{path} lacks {', '.join(sorted(missing))}: run `make image` again")
    return dict(data)


def _trust_mounts(bundle: Path, tmp: Path) -> list[str]:
    """Mount a CA bundle and a pip.conf that uses it, for this build only."""
    if not bundle.is_file():
        raise ImageBuildError(f"IMAGE_CA_BUNDLE={bundle}: no such file")
    pip_conf = tmp / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {CA_IN_BUILD}\n")
    return ["-v", f"{bundle.resolve()}:{CA_IN_BUILD}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]


def _source_url(env: Mapping[str, str]) -> str | None:
    if env.get("CI_PROJECT_URL"):
        return env["CI_PROJECT_URL"]
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):
        return f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}"
    return None
