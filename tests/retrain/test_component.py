"""The optional k8s component and the Alertmanager route agree with the receiver: prod with the
component renders the receiver locked down like the service, its settings load, and
Alertmanager's webhook reaches its Service with a token file. (Schemas, CRDs and checkov run
over this render too: tests/k8s, target ``prod+retrain-receiver``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from machinery.retrain.settings import RetrainSettings
from tests.k8s.render import render
from tests.monitoring.stack import ALERTMANAGER_CONFIG

pytestmark = pytest.mark.integration  # kubectl kustomize

NAME = "retrain-receiver"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(f"prod+{NAME}")


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    return found


def test_the_component_adds_the_receiver_and_leaves_the_service_alone(
    docs: list[dict[str, Any]],
) -> None:
    ours = [d for d in docs if d["metadata"]["name"].startswith(NAME)]
    assert sorted(d["kind"] for d in ours) == sorted(
        ["ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy", "ServiceMonitor"]
    )
    assert [d for d in docs if d not in ours] == render("prod")
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets never live in Git"


def test_the_receiver_runs_locked_down_from_the_pinned_inference_image(
    docs: list[dict[str, Any]],
) -> None:
    deployment = _one(docs, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 1  # the cool-down lives in the process
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    service_image = _one(docs, "Deployment", "inference")["spec"]["template"]["spec"]
    assert container["image"] == service_image["containers"][0]["image"]
    assert "@sha256:" in container["image"]
    assert container["command"][-2:] == ["-m", "machinery.retrain"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {NAME}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}

    settings = _one(docs, "ConfigMap", f"{NAME}-settings")["data"]
    for key in ("MLOPS_RETRAIN_WEBHOOK_TOKEN_FILE", "MLOPS_RETRAIN_FORGE_TOKEN_FILE"):
        assert Path(settings[key]).parent.as_posix() in mounts
    port = int(settings["MLOPS_RETRAIN_PORT"])
    assert container["ports"][0]["containerPort"] == port
    service = _one(docs, "Service", NAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    policy = _one(docs, "NetworkPolicy", NAME)["spec"]
    assert policy["ingress"][0]["ports"] == [{"port": port, "protocol": "TCP"}]


def test_the_shipped_settings_load(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = dict(_one(docs, "ConfigMap", f"{NAME}-settings")["data"])
    for key in ("MLOPS_RETRAIN_WEBHOOK_TOKEN_FILE", "MLOPS_RETRAIN_FORGE_TOKEN_FILE"):
        (tmp_path / key).write_text("secret\n")
        settings[key] = str(tmp_path / key)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    loaded = RetrainSettings()
    assert loaded.alerts == ["LiveAccuracyBelowCard", "InferenceDriftOverThreshold"]
    assert loaded.cooldown_seconds == 6 * 3600
    assert loaded.webhook_secret() == loaded.forge_secret() == "secret"


def test_alertmanager_sends_the_retrain_alerts_to_the_receivers_service_with_a_token_file(
    docs: list[dict[str, Any]],
) -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (receiver,) = [r for r in config["receivers"] if r["name"] == "mlops-retrain"]
    (hook,) = receiver["webhook_configs"]
    namespace = _one(docs, "Service", NAME)["metadata"]["namespace"]
    assert hook["url"] == f"http://{NAME}.{namespace}.svc/alerts"
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].endswith("/webhook-token")
    assert "credentials" not in auth  # never the token itself
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "mlops-retrain")
    assert route["continue"] is True
    assert f'namespace = "{namespace}"' in route["matchers"]
