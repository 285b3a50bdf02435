"""The receiver as deployed (uvicorn process) against the local forge's trigger APIs: auth,
one trigger per alert group, the cool-down, forge faults, bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.retrain.receiver import Receiver, alert, notification
from tests.support.forge_server import FORGEJO_REPO, GITLAB_PROJECT_ID, ForgeServer

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(tmp_path: Path, forge_server: ForgeServer) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "receiver", forge_server).start()
    yield r
    r.stop()


def test_a_webhook_without_the_right_credentials_is_401_and_starts_nothing(
    receiver: Receiver, forge_server: ForgeServer
) -> None:
    body = notification(alert())
    for auth in (None, "Bearer wrong-token", "Basic YWxlcnRtYW5hZ2VyOndyb25n", "token x", ""):
        answer = receiver.post(body, auth=auth)
        assert answer.status_code == 401, (auth, answer.text)
        assert answer.json() == {"detail": "missing or wrong credentials"}
    assert forge_server.triggers() == []
    assert receiver.metric("mlops_retrain_refused_total", reason="auth") == 5
    assert receiver.metric("mlops_retrain_triggers_total", alertname="LiveAccuracyBelowCard") == 0


def test_one_alert_starts_exactly_one_gitlab_pipeline_with_the_reason(
    receiver: Receiver, forge_server: ForgeServer
) -> None:
    answer = receiver.post(notification(alert(model_tag="exp-20261201-000000-abcdef0")))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "triggered" and answer.json()["pipeline_id"]
    (trigger,) = forge_server.triggers()
    assert trigger["forge"] == "gitlab" and trigger["project"] == str(GITLAB_PROJECT_ID)
    assert trigger["ref"] == "main"
    variables = trigger["variables"]
    assert variables["MLOPS_RETRAIN_ALERT"] == "LiveAccuracyBelowCard"
    assert variables["MLOPS_RETRAIN_SERVING_TAG"] == "exp-20261201-000000-abcdef0"
    assert variables["MLOPS_RETRAIN_REASON"] == (
        "LiveAccuracyBelowCard firing in mlops-prod: LiveAccuracyBelowCard in mlops-prod"
    )
    assert '"value":"0.71"' in variables["MLOPS_RETRAIN_VALUES"]
    assert variables["MLOPS_RETRAIN_GROUP_KEY"].endswith('namespace="mlops-prod"}')
    # The real python-gitlab call, as GitLab's docs show it: the trigger token in the body.
    (call,) = [r for r in forge_server.requests() if r["path"].endswith("/trigger/pipeline")]
    assert call["method"] == "POST" and call["auth"] is None and call["status"] == 201
    assert call["json"]["token"] and call["json"]["ref"] == "main"
    assert receiver.metric("mlops_retrain_triggers_total", alertname="LiveAccuracyBelowCard") == 1
    receiver.wait_for_log("gitlab pipeline")


def test_basic_auth_works_too_and_resolved_or_unmapped_alerts_start_nothing(
    receiver: Receiver, forge_server: ForgeServer
) -> None:
    resolved = receiver.post(notification(alert(status="resolved")), auth="basic")
    other = receiver.post(notification(alert("InferenceTargetDown")), auth="basic")
    assert resolved.json()["outcome"] == other.json()["outcome"] == "ignored"
    assert forge_server.triggers() == []
    drift = receiver.post(notification(alert("InferenceDriftOverThreshold")), auth="basic")
    assert drift.json()["outcome"] == "triggered"
    assert [t["variables"]["MLOPS_RETRAIN_ALERT"] for t in forge_server.triggers()] == [
        "InferenceDriftOverThreshold"
    ]


def test_a_flapping_alert_starts_one_run_per_cool_down(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    receiver = Receiver(tmp_path / "r", forge_server, COOLDOWN_SECONDS="3").start()
    try:
        body = notification(alert())
        started = time.monotonic()
        outcomes = [receiver.post(body).json()["outcome"] for _ in range(5)]
        # Fires, resolves, fires again: the same group, still inside the cool-down.
        receiver.post(notification(alert(status="resolved")))
        outcomes.append(receiver.post(body).json()["outcome"])
        assert time.monotonic() - started < 3, "too slow to test inside the cool-down"
        assert outcomes == ["triggered"] + ["deduped"] * 5
        assert len(forge_server.triggers()) == 1
        assert (
            receiver.metric("mlops_retrain_deduped_total", alertname="LiveAccuracyBelowCard") == 5
        )
        # Another group (another namespace) has a cool-down of its own.
        assert receiver.post(notification(alert(namespace="mlops-b"))).json()["outcome"] == (
            "triggered"
        )
        time.sleep(max(0.0, 3.2 - (time.monotonic() - started)))
        assert receiver.post(body).json()["outcome"] == "triggered"
        assert len(forge_server.triggers()) == 3
        assert (
            receiver.metric("mlops_retrain_triggers_total", alertname="LiveAccuracyBelowCard") == 3
        )
    finally:
        receiver.stop()


def test_a_forge_500_is_retried_then_one_log_line_and_a_counter_and_the_receiver_serves_on(
    receiver: Receiver, forge_server: ForgeServer
) -> None:
    forge_server.fail_next(500, times=4, path_contains="/trigger/pipeline")  # 1 + 3 retries
    answer = receiver.post(notification(alert()))
    assert answer.status_code == 200 and answer.json()["outcome"] == "failed", answer.text
    assert "gitlab answered 500" in answer.json()["detail"]
    assert forge_server.triggers() == []
    calls = [r for r in forge_server.requests() if r["path"].endswith("/trigger/pipeline")]
    assert [c["status"] for c in calls] == [500, 500, 500, 500]
    assert receiver.metric("mlops_retrain_failed_total", alertname="LiveAccuracyBelowCard") == 1
    assert receiver.metric("mlops_retrain_forge_attempts_total", outcome="retryable") == 4
    failures = [ln for ln in receiver.log().splitlines() if "no run started" in ln]
    assert len(failures) == 1 and "after 4 attempts" in failures[0], receiver.log()[-2000:]
    assert "Traceback" not in receiver.log()
    # Still serving, and the failed group was not put in its cool-down: the next try starts it.
    assert httpx.get(f"{receiver.url}/health", timeout=5).status_code == 200
    assert receiver.post(notification(alert())).json()["outcome"] == "triggered"
    assert len(forge_server.triggers()) == 1


def test_a_forge_that_refuses_the_token_is_not_retried(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    receiver = Receiver(tmp_path / "r", forge_server)
    (receiver.state / "forge-token").write_text("not-a-trigger-token\n")
    receiver.start()
    try:
        answer = receiver.post(notification(alert()))
        assert answer.json()["outcome"] == "failed"
        assert "gitlab answered 404" in answer.json()["detail"]
        calls = [r for r in forge_server.requests() if r["path"].endswith("/trigger/pipeline")]
        assert len(calls) == 1
    finally:
        receiver.stop()


def test_forgejo_gets_a_workflow_dispatch_with_the_reason_as_inputs(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    receiver = Receiver(tmp_path / "r", forge_server, kind="forgejo").start()
    try:
        answer = receiver.post(notification(alert("InferenceDriftOverThreshold")))
        assert answer.json()["outcome"] == "triggered", answer.text
        (trigger,) = forge_server.triggers()
        assert trigger == {
            "forge": "forgejo",
            "repo": FORGEJO_REPO,
            "workflow": "retrain.yml",
            "ref": "main",
            "inputs": trigger["inputs"],
        }
        assert set(trigger["inputs"]) == {"reason", "alert", "values", "serving_tag", "group_key"}
        assert trigger["inputs"]["alert"] == "InferenceDriftOverThreshold"
        (call,) = [r for r in forge_server.requests() if r["path"].endswith("/dispatches")]
        assert call["auth"] == "authorization:token" and call["status"] == 204
    finally:
        receiver.stop()


def test_oversized_and_malformed_bodies_are_refused_with_a_message(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    receiver = Receiver(tmp_path / "r", forge_server, MAX_BODY_BYTES="4096").start()
    try:
        big = notification(*[alert(pod=f"p{i}") for i in range(40)])
        answer = receiver.post(big)
        assert answer.status_code == 413 and answer.json()["detail"] == "body over 4096 bytes"
        not_json = receiver.post(None, content=b"{nope", headers={"Content-Type": "x"})
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
        no_group = receiver.post({"version": "4", "status": "firing", "alerts": []})
        assert no_group.status_code == 422
        assert no_group.json()["detail"].startswith("not an Alertmanager notification: groupKey")
        assert forge_server.triggers() == []
        assert receiver.metric("mlops_retrain_refused_total", reason="too_large") == 1
        assert receiver.metric("mlops_retrain_refused_total", reason="invalid") == 2
    finally:
        receiver.stop()


def test_a_missing_setting_is_one_line_and_exit_2(
    tmp_path: Path, forge_server: ForgeServer
) -> None:
    import subprocess
    import sys

    receiver = Receiver(tmp_path / "r", forge_server)
    env = receiver.env()
    del env["MLOPS_RETRAIN_WEBHOOK_TOKEN_FILE"]
    done = subprocess.run(
        [sys.executable, "-m", "machinery.retrain"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: settings: Value error, set MLOPS_RETRAIN_WEBHOOK_TOKEN_FILE (a mounted Secret) "
        "or MLOPS_RETRAIN_WEBHOOK_TOKEN"
    ]
