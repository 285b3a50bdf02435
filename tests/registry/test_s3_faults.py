"""S3 faults end as ``RegistryUnavailable`` quickly, with a message a person can act on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from machinery.registry import Registry, RegistryUnavailable
from tests.registry.helpers import Trained
from tests.support.s3 import use_s3_env
from tests.support.s3 import S3Server

pytestmark = pytest.mark.integration

MLOPS = [str(Path(sys.executable).parent / "mlops")]


def _timed_failure(call: Callable[[], Any], match: str) -> float:
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return time.monotonic() - started


def test_s3_down_fails_fast_and_recovers(
    private_s3_server: S3Server,
    trained: tuple[Trained, Trained],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = trained
    use_s3_env(monkeypatch, private_s3_server, tmp_path)
    url = f"s3://{private_s3_server.make_bucket()}/registry"
    registry = Registry.from_url(url)
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    registry.move_alias("prod", "v1", by="ci")

    private_s3_server.stop()
    calls: list[Callable[[], Any]] = [
        lambda: registry.meta("v1"),
        registry.tags,
        lambda: registry.download("v1", tmp_path / "dl"),
        lambda: registry.alias("prod"),
        lambda: registry.move_alias("prod", "v1", by="ci"),
        lambda: registry.publish("v2", b.model_dir, metrics=b.metrics),
    ]
    elapsed = [_timed_failure(call, "is unreachable") for call in calls]
    # boto3's defaults retry for many seconds; the registry's short timeouts must not.
    print("seconds to RegistryUnavailable per call:", [round(e, 2) for e in elapsed])
    assert max(elapsed) < 10, elapsed
    assert not (tmp_path / "dl" / "model.onnx").exists()

    done = subprocess.run(
        [*MLOPS, "registry", "alias", "show", "prod", "--registry", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: registry {url}: S3 at http://127.0.0.1:")

    private_s3_server.start()
    assert Registry.from_url(url).alias("prod").tag == "v1"


def test_a_server_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    with socket.socket() as silent:
        # Listening but never accepting: connects succeed, no answer ever comes.
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        registry = Registry.from_url("s3://bucket/registry", read_timeout=0.5, max_attempts=1)
        elapsed = _timed_failure(registry.tags, "unreachable.*timeout")
    assert elapsed < 10


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "nobody"}, "InvalidAccessKeyId"),
    ],
)
def test_wrong_credentials_are_a_readable_unavailable(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[Trained, Trained],
    change: dict[str, str],
    code: str,
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    for name, value in change.items():
        monkeypatch.setenv(name, value)
    registry = Registry.from_url(f"s3://{s3_bucket}/registry")
    message = f"refused the credentials \\({code}\\); check AWS_ACCESS_KEY_ID"
    _timed_failure(registry.tags, message)
    _timed_failure(lambda: registry.meta("v1"), message)
    _timed_failure(
        lambda: registry.publish("v1", trained[0].model_dir, metrics={}), "refused the credentials"
    )


def test_no_credentials_at_all(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    registry = Registry.from_url(f"s3://{s3_bucket}/registry")
    _timed_failure(registry.tags, "no S3 credentials; set AWS_ACCESS_KEY_ID")


def test_missing_bucket(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    registry = Registry.from_url("s3://no-such-bucket-here/registry")
    _timed_failure(registry.tags, "bucket 'no-such-bucket-here' does not exist")
    _timed_failure(lambda: registry.meta("v1"), "does not exist")


def test_registry_on_the_bucket_root_and_under_a_prefix_do_not_mix(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[Trained, Trained],
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    a, b = trained
    root = Registry.from_url(f"s3://{s3_bucket}")
    nested = Registry.from_url(f"s3://{s3_bucket}/team/registry/")
    root.publish("v1", a.model_dir, metrics={})
    nested.publish("v1", b.model_dir, metrics={})
    assert root.meta("v1").sha256 != nested.meta("v1").sha256
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"models/v1/model.onnx", "team/registry/models/v1/model.onnx"} <= keys
