"""The parts of `mlops doctor` that need no server: the per-check time budget, the region
consistency of an AWS endpoint, and what a registry token grants."""

from __future__ import annotations

import base64
import json
import time

import pytest

from machinery.doctor.image import _jwt_actions
from machinery.doctor.model import Check, Env, Failed, Row, ok
from machinery.doctor.runner import run_checks
from machinery.doctor.s3 import probe_bucket


def test_a_check_past_its_budget_is_a_failure_and_does_not_hold_the_others() -> None:
    def hangs(env: Env) -> list[Row]:
        time.sleep(30)
        return []

    def quick(env: Env) -> list[Row]:
        return [ok("quick", "fine")]

    started = time.monotonic()
    rows = run_checks([Check("hangs", 0.5, hangs), Check("quick", 5.0, quick)], {})
    assert time.monotonic() - started < 3
    assert [(r.name, r.status) for r in rows] == [("hangs", "fail"), ("quick", "ok")]
    assert rows[0].detail.startswith("no answer within")


def test_an_aws_endpoint_of_another_region_is_named() -> None:
    env = {
        "DVC_REMOTE_URL": "s3://bucket/dvcstore",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.raises(Failed) as caught:
        probe_bucket(env, "DVC_REMOTE_URL")  # refused before any call: no network needed
    assert "is in eu-west-1 but the region is us-east-1" in caught.value.detail
    assert caught.value.fix.startswith("set AWS_DEFAULT_REGION=eu-west-1")


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_a_registry_token_without_push_on_the_name_is_seen() -> None:
    pull_only = _jwt({"access": [{"type": "repository", "name": "t/inf", "actions": ["pull"]}]})
    assert _jwt_actions(pull_only, "t/inf") == ["pull"]
    assert _jwt_actions(_jwt({"access": []}), "t/inf") == []
    assert _jwt_actions("opaque-token", "t/inf") is None  # the registry decides at push time
