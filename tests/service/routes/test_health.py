"""Probes, metrics and docs: open, and ready only while a model is loaded."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import TAG_A


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live", "model_tag": None}
    assert client.get("/health/ready").json() == {"status": "ready", "model_tag": TAG_A}


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mlops_model_info{alias="prod"' in response.text


def test_docs_and_spec(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/get_experiment_metas", "/replace_ml_model", "/health/ready"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/metrics"]["get"]
