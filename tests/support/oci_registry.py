"""A real image registry (CNCF distribution, Debian's ``docker-registry``) on 127.0.0.1.

State in a temp dir, optional htpasswd login (bcrypt), stopped by PID. The digest a push
records is checked against what this server reports for the tag.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tests.support.ports import free_port
from tests.support.process import stop_process

# What a client says it takes: the server answers the manifest it stored, with its digest.
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclass
class OciRegistry:
    state_dir: Path
    user: str | None = None
    password: str | None = None
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry missing: bash .ci/install-system")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        auth = ""
        if self.user and self.password:
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.state_dir / "htpasswd").write_text(f"{self.user}:{hashed}\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {self.state_dir / 'htpasswd'}\n"
        config = self.state_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.state_dir / 'data'}\n"
            f"http:\n  addr: {self.host}\n" + auth
        )
        log = (self.state_dir / "registry.log").open("ab")
        self._proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_tail()}")
            try:
                self._get("/v2/")
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for the login it was told to
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"docker-registry not answering on {self.host}: {self.log_tail()}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def log_tail(self) -> str:
        log = self.state_dir / "registry.log"
        return log.read_text(errors="replace")[-800:] if log.exists() else ""

    def manifest_digest(self, path: str, tag: str) -> str:
        """``Docker-Content-Digest`` of ``GET /v2/PATH/manifests/TAG``."""
        response = self._get(f"/v2/{path}/manifests/{tag}", accept=MANIFEST_TYPES)
        return str(response.headers["Docker-Content-Digest"])

    def tags(self, path: str) -> list[str]:
        return list(json.loads(self._get(f"/v2/{path}/tags/list").read())["tags"])

    def _get(self, url_path: str, accept: str | None = None) -> urllib.request.addinfourl:
        request = urllib.request.Request(f"http://{self.host}{url_path}")
        if accept:
            request.add_header("Accept", accept)
        if self.user and self.password:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        response: urllib.request.addinfourl = urllib.request.urlopen(request, timeout=5)
        return response
