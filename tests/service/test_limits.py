"""Hostile input: big-pixel images, decode budget, deep JSON, over-limit bodies, and the token
checked before the body. Each test here failed on the service before issue 8."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from machinery.registry import Registry
from tests.service.conftest import ADMIN, PREDICT, AppFactory, Trained
from tests.service.test_metrics import scrape
from tests.support.fixture_models import FixtureModel


@cache
def blank_png(width: int, height: int, mode: str = "L") -> bytes:
    """A uniform picture: a few KB compressed however many pixels it has."""
    fill = {"L": 255, "LA": (255, 0), "RGBA": (255, 255, 255, 0)}[mode]
    buffer = io.BytesIO()
    Image.new(mode, (width, height), fill).save(buffer, format="PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def upload(data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("big.png", data, "image/png")}


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, on one event loop with the test (real concurrency)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


# --- images: decided by pixels, decoded off the loop, bounded --------------------------------


def test_big_pixel_image_does_not_stall_other_requests(make_app: AppFactory) -> None:
    """A 1000×1000 PNG is ~3 KB: small in bytes (the old rule decoded anything under 64 KiB on
    the event loop), 1 MP to decode. It must not hold the loop: a health check sent after it is
    answered before it."""
    app = make_app()
    big = blank_png(1000, 1000, "LA")
    assert len(big) < 65_536

    async def scenario() -> None:
        async with running(app) as client:
            slow = asyncio.create_task(client.post("/predict", files=upload(big), headers=PREDICT))
            await asyncio.sleep(0.05)  # the upload is being decoded now
            health = await client.get("/health/live")
            assert health.status_code == 200
            assert not slow.done(), "the big image was decoded on the event loop"
            response = await slow
            assert response.status_code == 200, response.text

    asyncio.run(scenario())


def test_decode_budget_answers_503_with_retry_after(make_app: AppFactory) -> None:
    app = make_app(decode_pixel_budget=1_000_000, inline_decode_max_pixels=10_000)
    image = blank_png(1000, 1000)

    async def scenario() -> None:
        async with running(app) as client:
            responses = await asyncio.gather(
                *(client.post("/predict", files=upload(image), headers=PREDICT) for _ in range(3))
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200, 503, 503], [r.text for r in responses]
            for busy in (r for r in responses if r.status_code == 503):
                assert busy.headers["retry-after"] == "1"
                assert "retry" in busy.json()["detail"]
            # The budget is given back: the next one is decoded.
            again = await client.post("/predict", files=upload(image), headers=PREDICT)
            assert again.status_code == 200

    asyncio.run(scenario())


def test_image_over_the_decode_budget_is_413(make_app: AppFactory) -> None:
    with TestClient(make_app(decode_pixel_budget=500_000)) as client:
        response = client.post("/predict", files=upload(blank_png(800, 800)), headers=PREDICT)
        assert response.status_code == 413
        assert "500000" in response.json()["detail"]


def test_default_pixel_limit_follows_the_card(client: TestClient, trained: Trained) -> None:
    # A 6×6 card: 256 × 36 pixels is under the 1 MP floor, so the limit is 1,000,000.
    assert trained.model_a.card.preprocessing is not None
    ok = client.post("/predict", files=upload(blank_png(1000, 1000)), headers=PREDICT)
    assert ok.status_code == 200
    over = client.post("/predict", files=upload(blank_png(1001, 1000)), headers=PREDICT)
    assert over.status_code == 413
    assert "the limit is 1000000 pixels" in over.json()["detail"]


# Pillow on its own: a warning from its limit (16 MP here), its own error from twice that.
@pytest.mark.parametrize("side", [4100, 6000])
def test_pixel_limit_message_is_ours_and_pillow_stays_quiet(
    make_app: AppFactory, side: int
) -> None:
    with TestClient(make_app(max_image_pixels=16_000_000)) as client:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            response = client.post("/predict", files=upload(blank_png(side, side)), headers=PREDICT)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert response.status_code == 413
    assert f"image is {side}×{side}" in response.json()["detail"]
    assert "the limit is 16000000 pixels" in response.json()["detail"]


def test_transparent_big_image_reads_as_paper(make_app: AppFactory, trained: Trained) -> None:
    """The alpha flattening (done after the resize now) still reads transparency as white."""
    with TestClient(make_app()) as client:
        clear = client.post("/predict", files=upload(blank_png(600, 600, "RGBA")), headers=PREDICT)
        white = client.post("/predict", files=upload(blank_png(600, 600)), headers=PREDICT)
        assert clear.status_code == white.status_code == 200
        assert clear.json()["probabilities"] == white.json()["probabilities"]


# --- JSON and bodies ------------------------------------------------------------------------


def test_deeply_nested_json_is_422(client: TestClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for path, headers in (("/predict", PREDICT), ("/replace_ml_model", ADMIN)):
        response = client.post(
            path,
            content='{"instances": ' + deep + "}",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (path, response.text)
        assert "Traceback" not in response.text


def metric(client: TestClient, route: str, status: int) -> float:
    requests = scrape(client).get("mlops_http_requests_total", {})
    return requests.get((("method", "POST"), ("route", route), ("status", str(status))), 0.0)


@pytest.mark.parametrize("path", ["/predict", "/replace_ml_model"])
@pytest.mark.parametrize("token", [None, "admin"])
def test_over_limit_body_is_one_413_counted_as_sent(
    make_app: AppFactory, path: str, token: str | None
) -> None:
    with TestClient(make_app(max_upload_bytes=1000)) as client:
        headers = {"Content-Type": "application/json", **(ADMIN if token else {})}
        body = b'{"tag": "' + b"a" * 5000 + b'"}'
        declared = client.post(path, content=body, headers=headers)
        chunked = client.post(path, content=iter([body[:600], body[600:]]), headers=headers)
        # A declared length is refused before anything else; a chunked body only once read,
        # which happens after the token check.
        refused = [declared, chunked] if token else [declared]
        for response in refused:
            assert response.status_code == 413
            assert response.json() == {"detail": "request body exceeds the limit of 1000 bytes"}
        if not token:
            assert chunked.status_code == 401
        # The metrics count what the client got.
        assert metric(client, path, 413) == len(refused)
        assert metric(client, path, 401) == (0 if token else 1)
        assert metric(client, path, 200) == 0


def test_swap_checks_the_token_before_the_body(client: TestClient) -> None:
    for body in ('{"tag": 5}', "{", '{"nope": 1}'):
        headers = {"Content-Type": "application/json"}
        response = client.post("/replace_ml_model", content=body, headers=headers)
        assert response.status_code == 401, (body, response.text)
        assert "tag" not in response.text
        forbidden = client.post("/replace_ml_model", content=body, headers={**headers, **PREDICT})
        assert forbidden.status_code == 403
        refused = client.post("/replace_ml_model", content=body, headers={**headers, **ADMIN})
        assert refused.status_code == 422


# --- a model that takes JSON only (card without preprocessing) ------------------------------


@pytest.fixture
def tabular_client(make_app: AppFactory, registry_dir: Path, tabular: FixtureModel) -> TestClient:
    Registry.from_url(str(registry_dir)).publish("tab", tabular.model_dir, metrics={})
    with TestClient(make_app(model_tag="tab")) as client:
        yield client  # type: ignore[misc]


def test_tabular_model_takes_json_and_says_so_to_uploads(
    tabular_client: TestClient, tabular: FixtureModel, trained: Trained
) -> None:
    rows = tabular.test_x[:3].tolist()
    ok = tabular_client.post("/predict", json={"instances": rows}, headers=PREDICT)
    assert ok.status_code == 200
    assert {p["label"] for p in ok.json()["predictions"]} <= set(tabular.labels)
    for files in (
        {"file": ("notes.txt", b"hello", "text/plain")},
        {"file": ("a.png", trained.image(0), "image/png")},
    ):
        response = tabular_client.post("/predict", files=files, headers=PREDICT)
        assert response.status_code == 415
        detail = response.json()["detail"]
        assert (
            "this model takes JSON rows" in detail and f"[{tabular.n_features} numbers]" in detail
        )
        assert "upload an image" not in detail


def test_openapi_follows_the_served_card(
    tabular_client: TestClient, client: TestClient, tabular: FixtureModel, trained: Trained
) -> None:
    image_spec = client.get("/openapi.json").json()
    table_spec = tabular_client.get("/openapi.json").json()
    image_body = image_spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    table_body = table_spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "application/json"} <= set(image_body)
    assert set(table_body) == {"application/json"}
    for spec, width in ((image_spec, trained.n_features), (table_spec, tabular.n_features)):
        rows = spec["components"]["schemas"]["Instances"]["properties"]["instances"]
        assert (rows["minItems"], rows["maxItems"]) == (1, 1024)
        assert (rows["items"]["minItems"], rows["items"]["maxItems"]) == (width, width)


def test_openapi_documents_auth_and_limits(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/predict", "post"),
        ("/get_experiment_metas", "get"),
        ("/replace_ml_model", "post"),
    ):
        assert {"401", "403"} <= set(paths[path][method]["responses"]), path
    assert {"400", "413", "422"} <= set(paths["/replace_ml_model"]["post"]["responses"])
    body = paths["/replace_ml_model"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/SwapRequest"}


def test_inference_buckets_resolve_microseconds(client: TestClient, trained: Trained) -> None:
    client.post("/predict", json={"instances": trained.rows(2)}, headers=PREDICT)
    text = client.get("/metrics").text
    bounds = [
        float(line.split('le="')[1].split('"')[0])
        for line in text.splitlines()
        if line.startswith("mlops_inference_duration_seconds_bucket") and 'input="json"' in line
    ]
    assert [b for b in bounds if b < 0.0005] == [1e-05, 2.5e-05, 5e-05, 0.0001, 0.00025]
