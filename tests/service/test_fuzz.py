"""Schemathesis against the app's own OpenAPI spec: no generated request yields a 5xx."""

from __future__ import annotations


import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from machinery.registry import Registry
from service.main import create_app
from tests.service.conftest import ADMIN, PREDICT, Trained, publish_both, settings_for


@pytest.fixture(scope="module")
def fuzzed_app(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    root = tmp_path_factory.mktemp("fuzz")
    publish_both(Registry.from_url(str(root / "registry")), trained)
    return create_app(settings_for(str(root / "registry"), root, max_upload_bytes=200_000))


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


def fuzz(api_schema: schemathesis.schemas.BaseSchema, headers: dict[str, str], n: int) -> None:
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        run()


def test_no_server_errors_as_admin(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, ADMIN, 60)


def test_no_server_errors_as_predict_client(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, PREDICT, 25)


def test_no_server_errors_without_token(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, {}, 10)


def test_spec_documents_every_predict_body(fuzzed_app: FastAPI) -> None:
    body = fuzzed_app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png", "image/jpeg"} <= set(body)
