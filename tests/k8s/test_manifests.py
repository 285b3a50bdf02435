"""k8s/: every kustomization renders, the overlay contract holds, the pods are locked down, core
kinds pass the Kubernetes schemas strictly, CRD kinds pass their projects' published schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s.render import (
    ENVIRONMENTS,
    K8S,
    NODE_TOOLS,
    REPO,
    TARGETS,
    is_core,
    one,
    tool,
)

pytestmark = pytest.mark.integration

Docs = dict[str, list[dict[str, Any]]]
HTTPSO_CRD = Path(__file__).parent / "schemas" / "http.keda.sh_httpscaledobjects.v0.9.0.yaml"
KUBERNETES_VERSION = "1.33.0"


def _overlay(env: str) -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "overlays" / env / "kustomization.yaml").read_text()))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_contract(rendered: Docs, env: str) -> None:
    """What the CI bump edits (the `inference` image) and what the overlay alone sets (alias)."""
    docs = rendered[env]
    (image,) = [i for i in _overlay(env)["images"] if i["name"] == "inference"]
    # The bump pins by digest (the design allows a tag instead); nothing else in the entry.
    assert set(image) in ({"name", "newName", "digest"}, {"name", "newName", "newTag"})
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if "digest" in image:
        assert image["digest"].startswith("sha256:") and len(image["digest"]) == 71
        assert container["image"] == f"{image['newName']}@{image['digest']}"
    else:
        assert container["image"] == f"{image['newName']}:{image['newTag']}"
    settings = one(docs, "ConfigMap", "inference-settings-")["data"]
    assert settings["MLOPS_MODEL_ALIAS"] == env
    for doc in docs:
        assert doc["metadata"]["namespace"] == f"mlops-{env}", doc["kind"]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(docs, kind)["metadata"]["labels"]["release"]
    dashboards = [d for d in docs if d["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert [d["metadata"]["labels"]["grafana_dashboard"] for d in dashboards] == ["1"]
    # kustomize has no globs: every dashboard generated for this env must be listed there.
    shipped = {p.name for p in (REPO / "monitoring" / "envs" / env).glob("*.json")}
    assert set(dashboards[0]["data"]) == shipped
    for name, text in dashboards[0]["data"].items():
        assert text == (REPO / "monitoring" / "envs" / env / name).read_text()
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets never live in Git"


def test_pods_run_locked_down(rendered: Docs) -> None:
    for env in ENVIRONMENTS:
        docs = rendered[env]
        deployment = one(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert set(container["resources"]) == {"requests", "limits"}
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        # Writable paths are emptyDirs: the model cache the settings name, and /tmp.
        settings = one(docs, "ConfigMap", "inference-settings-")["data"]
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[settings["MLOPS_MODEL_CACHE_DIR"]] in empty
        assert mounts["/tmp"] in empty
        # Secrets by reference only, mounted where the settings point.
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"inference-tokens", "inference-s3"}
        assert Path(settings["MLOPS_TOKEN_FILE"]).parent.as_posix() in mounts
        assert Path(settings["AWS_SHARED_CREDENTIALS_FILE"]).parent.as_posix() in mounts
        assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert one(rendered["prod"], "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def test_core_kinds_pass_the_kubernetes_schemas_strictly(rendered: Docs, tmp_path: Path) -> None:
    core = [doc for target in TARGETS for doc in rendered[target] if is_core(doc)]
    kinds = {d["kind"] for d in core}
    assert kinds >= {"Deployment", "Service", "ServiceAccount", "ConfigMap", "NetworkPolicy"}
    assert kinds >= {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
    good = tmp_path / "core.yaml"
    good.write_text(yaml.safe_dump_all(core))
    result = _validate(good)
    assert result.returncode == 0, result.stdout + result.stderr
    # Strict mode refuses a misspelt field (so the pass above means something).
    broken = json.loads(json.dumps(one(rendered["prod"], "Deployment")))
    broken["spec"]["replica"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken))
    assert _validate(bad).returncode != 0


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_custom_resources_pass_their_published_schemas(rendered: Docs, tmp_path: Path) -> None:
    custom = [doc for target in TARGETS for doc in rendered[target] if not is_core(doc)]
    kinds = {d["kind"] for d in custom}
    assert kinds == {
        "Application",
        "AppProject",
        "ServiceMonitor",
        "PrometheusRule",
        "HTTPScaledObject",
    }
    http = [d for d in custom if d["kind"] == "HTTPScaledObject"]
    models = [d for d in custom if d["kind"] != "HTTPScaledObject"]
    broken = json.loads(json.dumps(one(rendered["prod"], "PrometheusRule")))
    broken["spec"]["groups"][0]["rules"][0]["for"] = 5  # a number where a duration belongs
    result = _node_validate(models + [broken], tmp_path)
    lines = result.stdout.splitlines()
    assert len(lines) == len(models) + 1
    assert all(line.startswith("valid ") for line in lines[:-1]), result.stdout
    assert lines[-1].startswith("INVALID monitoring.coreos.com/v1 PrometheusRule/inference")
    assert result.returncode == 1
    for doc in http:
        _crd_validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        _crd_validate({**http[0], "spec": {**http[0]["spec"], "replicas": {"minimum": 0}}})


def _node_validate(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert (NODE_TOOLS / "node_modules" / "@kubernetes-models").is_dir(), "make system-deps"
    data = tmp_path / "custom.json"
    data.write_text(json.dumps(docs))
    script = Path(__file__).parent / "validate_crds.mjs"
    return subprocess.run(
        ["node", str(script), str(NODE_TOOLS), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _crd_validate(doc: dict[str, Any]) -> None:
    """Against the published CRD's openAPIV3Schema, refusing unknown fields like a strict
    apply does (a structural schema would prune them silently)."""
    crd = yaml.safe_load(HTTPSO_CRD.read_text())
    (version,) = [
        v for v in crd["spec"]["versions"] if v["name"] == doc["apiVersion"].split("/")[1]
    ]
    schema = _closed(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(doc, schema)


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: _closed(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _closed(out["items"])
    return out


def test_argocd_project_allows_exactly_what_the_overlays_deploy(rendered: Docs) -> None:
    docs = rendered["argocd"]
    project = one(docs, "AppProject")["spec"]
    allowed = {(k["group"], k["kind"]) for k in project["namespaceResourceWhitelist"]}
    deployed = {
        (d["apiVersion"].rpartition("/")[0], d["kind"])
        for target in ("staging", "prod", "staging+scale-to-zero")
        for d in rendered[target]
    }
    assert allowed == deployed
    assert project["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    assert {d["namespace"] for d in project["destinations"]} == {f"mlops-{e}" for e in ENVIRONMENTS}
    (repo,) = project["sourceRepos"]
    apps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}
    assert set(apps) == {f"inference-{env}" for env in ENVIRONMENTS}
    for env in ENVIRONMENTS:
        app = apps[f"inference-{env}"]
        spec = app["spec"]
        assert app["metadata"]["namespace"] == "argocd"
        assert spec["source"]["repoURL"] == repo
        assert (REPO / spec["source"]["path"] / "kustomization.yaml").is_file()
        assert spec["destination"]["namespace"] == f"mlops-{env}"
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
        assert "RespectIgnoreDifferences=true" in spec["syncPolicy"]["syncOptions"]
        assert spec["syncPolicy"]["retry"]["backoff"]["factor"] == 2
        ignored = spec["ignoreDifferences"][0]
        assert (ignored["kind"], ignored["jsonPointers"]) == ("Deployment", ["/spec/replicas"])
        triggers = {k.split(".")[3] for k in app["metadata"]["annotations"]}
        assert {"on-sync-succeeded", "on-sync-failed"} <= triggers


def test_scale_to_zero_component(rendered: Docs) -> None:
    docs = rendered["staging+scale-to-zero"]
    kinds = {d["kind"] for d in docs}
    assert "HorizontalPodAutoscaler" not in kinds and "PodDisruptionBudget" not in kinds
    scaled = one(docs, "HTTPScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    service = one(docs, "Service")
    assert target["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert (target["service"], target["port"]) == (
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
    )
    assert scaled["spec"]["replicas"]["min"] == 0
    assert scaled["metadata"]["namespace"] == "mlops-staging"
    # Without the component the overlay keeps its HPA.
    assert "HorizontalPodAutoscaler" in {d["kind"] for d in rendered["staging"]}
