"""Schemathesis against the app's own OpenAPI spec with every check (the Python API's
equivalent of ``schemathesis run --checks all``), positive and negative data, as an admin, as a
predict client and anonymously: zero failures, not only zero 5xx."""

from __future__ import annotations

import io

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis.checks import CHECKS
from schemathesis.generation.modes import GenerationMode

from machinery.registry import Registry
from service.main import create_app
from tests.service.conftest import ADMIN, PREDICT, Trained, publish_both, settings_for
from tests.support.fixture_models import FixtureModel

IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF",
                 "image/bmp": "BMP", "image/webp": "WEBP", "image/tiff": "TIFF"}  # fmt: skip


def _pictures(fmt: str) -> st.SearchStrategy[bytes]:
    """Real pictures of any size and colour: what the spec's image media types mean."""

    @st.composite
    def picture(draw: st.DrawFn) -> bytes:
        size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
        mode = draw(st.sampled_from(["L", "RGB", "RGBA"] if fmt in ("PNG", "WEBP") else ["L"]))
        colour = draw(st.integers(0, 255))
        buffer = io.BytesIO()
        Image.new(mode, size, (colour,) * len(mode)).save(buffer, format=fmt)  # type: ignore
        return buffer.getvalue()

    return picture()


for _media_type, _fmt in IMAGE_FORMATS.items():
    schemathesis.openapi.media_type(_media_type, _pictures(_fmt))


@pytest.fixture(scope="module")
def fuzzed_app(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    root = tmp_path_factory.mktemp("fuzz")
    publish_both(Registry.from_url(str(root / "registry")), trained)
    # The default body limit (2 MB): 1024 rows of the widest JSON numbers stay under it, so a
    # schema-valid body is never a 413.
    return create_app(settings_for(str(root / "registry"), root))


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


def fuzz(api_schema: schemathesis.schemas.BaseSchema, headers: dict[str, str], n: int) -> None:
    checks = CHECKS.get_all()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # No negative data exists for an operation without parameters or body (the
                # CLI skips these the same way).
                assert mode is GenerationMode.NEGATIVE, operation.label


def test_all_checks_pass_as_admin(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, ADMIN, 20)


def test_all_checks_pass_as_predict_client(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, PREDICT, 15)


def test_all_checks_pass_without_token(api_schema: schemathesis.schemas.BaseSchema) -> None:
    fuzz(api_schema, {}, 8)


def test_all_checks_pass_on_a_tabular_model(
    trained: Trained, tabular: FixtureModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("fuzz-tabular")
    registry = Registry.from_url(str(root / "registry"))
    publish_both(registry, trained)
    registry.publish("tab", tabular.model_dir, metrics={})
    app = create_app(settings_for(str(root / "registry"), root, model_tag="tab"))
    fuzz(schemathesis.openapi.from_asgi("/openapi.json", app), ADMIN, 15)


def test_spec_documents_every_predict_body(fuzzed_app: FastAPI) -> None:
    body = fuzzed_app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png", "image/jpeg"} <= set(body)


def test_an_empty_image_is_outside_the_spec_as_the_code_refuses_it(fuzzed_app: FastAPI) -> None:
    """The spec and the code agree on an empty image: the code answers 422, so the spec must not
    call it valid (schemathesis' positive-data check, ST202, found an empty file part that the
    spec allowed)."""
    from fastapi.testclient import TestClient

    body = fuzzed_app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]["file"]
    assert form.get("minLength", 0) >= 1, form
    assert body["image/png"]["schema"].get("minLength", 0) >= 1
    with TestClient(fuzzed_app) as client:
        empty_part = client.post(
            "/predict", files={"file": ("a.png", b"", "image/png")}, headers=PREDICT
        )
        assert empty_part.status_code == 422, empty_part.text
        raw = client.post("/predict", content=b"", headers={**PREDICT, "content-type": "image/png"})
        assert raw.status_code == 422, raw.text
