"""Production hardening of k8s/ and the image: Pod Security on the namespaces, ephemeral
storage that fits the emptyDirs, prod spread over nodes and zones, a NetworkPolicy that admits
and reaches only what it must, and a base image pinned by digest."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.k8s.render import ENVIRONMENTS, REPO, one, quantity

pytestmark = pytest.mark.integration

Docs = dict[str, list[dict[str, Any]]]
# Room above the emptyDirs for what else counts against the pod's ephemeral storage: the
# container's logs (the kubelet keeps up to 5 files of 10Mi by default) and its writable layer
# (the root filesystem is read-only).
HEADROOM = quantity("128Mi")
PSA = "pod-security.kubernetes.io/"


def test_argo_cd_enforces_the_restricted_pod_security_standard(rendered: Docs) -> None:
    for app in (d for d in rendered["argocd"] if d["kind"] == "Application"):
        policy = app["spec"]["syncPolicy"]
        assert "CreateNamespace=true" in policy["syncOptions"]
        labels = policy["managedNamespaceMetadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[PSA + mode] == "restricted", (app["metadata"]["name"], mode)
            assert labels.get(PSA + mode + "-version", "latest") == "latest"


@pytest.mark.parametrize("target", [*ENVIRONMENTS, "staging+scale-to-zero"])
def test_ephemeral_storage_limit_holds_the_emptydirs_with_headroom(
    rendered: Docs, target: str
) -> None:
    pod = one(rendered[target], "Deployment")["spec"]["template"]["spec"]
    sizes = [quantity(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"] if "emptyDir" in v]
    assert len(sizes) == 2 and all(sizes), "every emptyDir has a sizeLimit"
    for container in pod["containers"]:
        resources = container["resources"]
        limit = quantity(resources["limits"]["ephemeral-storage"])
        request = quantity(resources["requests"]["ephemeral-storage"])
        assert limit >= sum(sizes) + HEADROOM, (target, limit, sizes)
        assert request <= limit


@pytest.mark.parametrize("target", [*ENVIRONMENTS, "staging+scale-to-zero"])
def test_the_service_refuses_a_model_before_it_overfills_the_cache(
    rendered: Docs, target: str
) -> None:
    pod = one(rendered[target], "Deployment")["spec"]["template"]["spec"]
    settings = next(
        d["data"]
        for d in rendered[target]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("inference-settings")
    )
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert settings["MLOPS_MODEL_CACHE_DIR"] == mounts["model-cache"]
    assert int(settings["MLOPS_MAX_MODEL_BYTES"]) < quantity(cache["emptyDir"]["sizeLimit"])


def test_prod_spreads_over_nodes_and_zones(rendered: Docs) -> None:
    deployment = one(rendered["prod"], "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = {
        c["topologyKey"]: c
        for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    }
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert deployment["spec"]["replicas"] >= 2


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_network_policy_admits_only_named_namespaces_and_reaches_only_dns_and_s3(
    rendered: Docs, env: str
) -> None:
    docs = rendered[env]
    policy = one(docs, "NetworkPolicy")["spec"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": 8000, "protocol": "TCP"}]
    sources = [peer["namespaceSelector"]["matchLabels"] for peer in ingress["from"]]
    assert all(set(peer) == {"namespaceSelector"} for peer in ingress["from"])
    assert {s["kubernetes.io/metadata.name"] for s in sources} == {
        "monitoring",
        "ingress-nginx",
        "keda",
    }
    # Every egress rule names its peers: no rule opens a port to any address.
    for rule in policy["egress"]:
        assert rule.get("to"), rule
        for peer in rule["to"]:
            assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0"), rule
    dns, s3 = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    (block,) = s3["to"]
    assert re.fullmatch(r"[0-9.]+/[0-9]+", block["ipBlock"]["cidr"])
    assert [p["port"] for p in s3["ports"]] == [443]


def test_the_base_image_is_pinned_by_digest_and_the_local_base_still_overrides_it() -> None:
    dockerfile = (REPO / "service" / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default), default
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    # The offline build passes its own base (tests/support/image_build.py) through the ARG.
    builder = (REPO / "src" / "machinery" / "image" / "builder.py").read_text()
    assert '"--build-arg", f"PYTHON_IMAGE={python_image}"' in builder
