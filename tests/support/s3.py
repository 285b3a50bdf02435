"""A real S3 server (SeaweedFS ``weed mini``) on 127.0.0.1 with credentials enforced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.ports import free_port_block
from tests.support.process import stop_process


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).is_file():
        raise RuntimeError("SeaweedFS 'weed' not found: install the dev lock (make setup)")
    return found


@dataclass
class S3Server:
    """Start it, use ``endpoint_url`` and the keys, stop it; state lives in ``state_dir``."""

    state_dir: Path
    access_key: str = "ci-access"
    secret_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    s3_port: int = 0
    # More keys, e.g. a read-only one: {"name", "credentials": [...], "actions": ["Read", "List"]}
    extra_identities: list[dict[str, Any]] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment a client needs: the way a user points boto3 and DVC at MinIO."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def start(self) -> None:
        data, logs = self.state_dir / "data", self.state_dir / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "ci",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        identities["identities"].extend(self.extra_identities)
        (self.state_dir / "s3.json").write_text(json.dumps(identities))
        if not self.s3_port:
            base = free_port_block(5)
            self._ports = list(range(base, base + 5))
            self.s3_port = self._ports[3]
        p = self._ports
        cmd = [
            weed_binary(),
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p[0]}",
            f"-volume.port={p[1]}",
            f"-filer.port={p[2]}",
            f"-s3.port={p[3]}",
            f"-admin.port={p[4]}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self.state_dir}/filer.sock",
            f"-s3.localSocket={self.state_dir}/s3.sock",
            "-s3.autoCreateBucket=false",
            f"-s3.config={self.state_dir}/s3.json",
        ]
        out = (logs / "stdout.log").open("ab")
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.state_dir)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until S3 answers *and* every object stored before a restart reads back.

        A restarted ``weed mini`` lists buckets as soon as its S3 port opens but answers
        500 InternalError on object reads until the volume server has reported its volumes
        to the master (seen in CI: a swap right after ``start()`` got 503). Tests that stop
        and start the server mean "S3 is back", so ``start()`` returns only then.
        """
        client = self.client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"weed exited early; see {self.state_dir}/logs")
            try:
                self._read_everything(client)
                return
            except Exception as err:  # noqa: BLE001 - not up yet, whatever the error
                last = err
                time.sleep(0.2)
        raise TimeoutError(f"SeaweedFS S3 did not become ready: {last!r}")

    @staticmethod
    def _read_everything(client: Any, limit: int = 500) -> None:
        """Read every stored object (test servers hold a handful; ``limit`` bounds it)."""
        read = 0
        for bucket in client.list_buckets().get("Buckets", []):
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
            for page in pages:
                for obj in page.get("Contents", []):
                    client.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                    read += 1
                    if read >= limit:
                        return

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"b-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.head_bucket(Bucket=name)
                return name
            except Exception:  # noqa: BLE001 - bucket creation is asynchronous
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def s3_env(server: S3Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.env)
    return env


# Boto3 must see only the test server's settings, never a developer's profile or ~/.aws.
_FOREIGN_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION")


def use_s3_env(monkeypatch: pytest.MonkeyPatch, server: S3Server, tmp_path: Path) -> None:
    """Point boto3 (in this process) at ``server`` and nothing else."""
    for name in _FOREIGN_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
