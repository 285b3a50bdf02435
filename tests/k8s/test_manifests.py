"""k8s/: every kustomization renders, the overlay contract holds, the pods are locked down, core
kinds pass the Kubernetes schemas strictly, CRD kinds pass their projects' published schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from machinery.deploy.promote import deploy_tag
from tests.k8s import crd_schema
from tests.k8s.render import (
    ENVIRONMENTS,
    K8S,
    REPO,
    TARGETS,
    is_core,
    one,
    render_overlay,
    tool,
)

pytestmark = pytest.mark.integration

Docs = dict[str, list[dict[str, Any]]]
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


def test_custom_resources_pass_their_published_crds_strictly(rendered: Docs) -> None:
    custom = [doc for target in TARGETS for doc in rendered[target] if not is_core(doc)]
    kinds = {(d["apiVersion"], d["kind"]) for d in custom}
    assert kinds == crd_schema.kinds()  # every vendored CRD is used, every kind has one
    for doc in custom:
        assert crd_schema.errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"
    # A wrong type still fails (a number where PrometheusRule wants a duration).
    broken = json.loads(json.dumps(one(rendered["prod"], "PrometheusRule")))
    broken["spec"]["groups"][0]["rules"][0]["for"] = 5
    assert any("rules.0.for" in e for e in crd_schema.errors(broken))


# A misspelt or invented field in each kind: the API server would prune it silently.
TYPOS = {
    "ServiceMonitor": ("spec.endpoints.0", "scrapeTimout", "5s"),
    "PrometheusRule": ("spec.groups.0.rules.0", "expresion", "up == 0"),
    "Application": ("spec.syncPolicy", "automatic", {"prune": True}),
    "AppProject": ("spec", "sourceRepo", ["https://example.com/x.git"]),
    "InterceptorRoute": ("spec.timeouts", "readyness", "10s"),
    "ScaledObject": ("spec", "cooldownPeriods", 60),
}


@pytest.mark.parametrize("kind", sorted(TYPOS))
@pytest.mark.parametrize("where", ["typo", "spec.bogusField"])
def test_an_unknown_field_fails_for_every_custom_kind(
    rendered: Docs, kind: str, where: str
) -> None:
    (doc,) = [d for t in TARGETS for d in rendered[t] if d["kind"] == kind][:1]
    broken = json.loads(json.dumps(doc))
    path, field, value = TYPOS[kind] if where == "typo" else ("spec", "bogusField", 1)
    node = broken
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    node[field] = value
    found = crd_schema.errors(broken)
    assert any(f"'{field}' was unexpected" in e for e in found), found


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
    # Staging follows main; prod follows the tag only promotion moves (tests/ci/test_promote.py).
    assert apps["inference-staging"]["spec"]["source"]["targetRevision"] == "main"
    assert apps["inference-prod"]["spec"]["source"]["targetRevision"] == deploy_tag("prod")


def test_scale_to_zero_component(rendered: Docs) -> None:
    """The KEDA HTTP add-on's current API: an InterceptorRoute (routing, metric, timeouts) and
    a ScaledObject we own; clients reach the interceptor; the host is the overlay's value."""
    docs = rendered["staging+scale-to-zero"]
    kinds = {d["kind"] for d in docs}
    assert "HorizontalPodAutoscaler" not in kinds and "PodDisruptionBudget" not in kinds
    assert "HTTPScaledObject" not in kinds  # deprecated since http-add-on v0.14
    route = one(docs, "InterceptorRoute")
    scaled = one(docs, "ScaledObject")
    (service,) = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "inference"
    ]
    deployment = one(docs, "Deployment")
    assert route["apiVersion"] == "http.keda.sh/v1beta1"
    assert route["spec"]["target"] == {
        "service": service["metadata"]["name"],
        "port": service["spec"]["ports"][0]["port"],
    }
    # The host is what the overlay declares (a ConfigMap kustomize reads and never deploys).
    overlay = _overlay("staging")
    (declared,) = [g for g in overlay["configMapGenerator"] if g["name"] == "scale-to-zero"]
    assert declared["options"]["annotations"]["config.kubernetes.io/local-config"] == "true"
    assert route["spec"]["rules"] == [{"hosts": [declared["literals"][0].split("=", 1)[1]]}]
    assert not [d for d in docs if d["metadata"]["name"] == "scale-to-zero"]
    # A cold start (the image is ready ~2 s after the model loads; the startup probe allows
    # 300 s for a download) fits the interceptor's wait, and the request budget covers it.
    timeouts = {k: _seconds(v) for k, v in route["spec"]["timeouts"].items()}
    assert 60 <= timeouts["readiness"] < timeouts["request"]
    assert timeouts["responseHeader"] >= 10
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert scaled["spec"]["minReplicaCount"] == 0
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external-push"
    assert trigger["metadata"]["interceptorRoute"] == route["metadata"]["name"]
    assert trigger["metadata"]["scalerAddress"].startswith("keda-add-ons-http-external-scaler.")
    # Argo CD creates the route before the ScaledObject (the add-on's docs ask for that order).
    assert int(scaled["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) > 0
    # Clients go to the interceptor: a Service in our namespace naming it.
    proxy = one(docs, "Service", "inference-proxy")
    assert proxy["spec"]["type"] == "ExternalName"
    assert proxy["spec"]["externalName"].startswith("keda-add-ons-http-interceptor-proxy.keda.")
    # The app's labels on every object the component adds.
    app_labels = {k: v for k, v in deployment["metadata"]["labels"].items() if "component" not in k}
    for doc in (route, scaled, proxy):
        assert app_labels.items() <= doc["metadata"]["labels"].items(), doc["kind"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "mlops-staging"
    # Without the component the overlay keeps its HPA.
    assert "HorizontalPodAutoscaler" in {d["kind"] for d in rendered["staging"]}


def test_scale_to_zero_without_a_host_fails_to_render(tmp_path: Path) -> None:
    """No silent default: an overlay that turns the component on without saying its host."""
    overlay = _overlay("staging")
    overlay["configMapGenerator"] = [
        g for g in overlay["configMapGenerator"] if g["name"] != "scale-to-zero"
    ]
    with pytest.raises(AssertionError, match="scale-to-zero"):
        render_overlay(overlay, "staging", "scale-to-zero")


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    number, unit = duration.rstrip("mshd"), duration[len(duration.rstrip("mshd")) :]
    return float(number) * units[unit]
