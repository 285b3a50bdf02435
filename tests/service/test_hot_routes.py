"""``/predict`` and V2 infer are awaited straight from the middleware stack
(``service/hot_routes.py``): what a client sees stays FastAPI's answer, and an endpoint that
could not be called that way is refused when the app is built, not skipped silently."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.hot_routes import HotRoutes
from tests.service.conftest import PREDICT, ZERO_ROW
from tests.support.ports import free_port


def test_other_methods_and_a_trailing_slash_are_fastapis_answers(client: TestClient) -> None:
    answer = client.get("/predict", headers=PREDICT)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    answer = client.post("/predict/", json=ZERO_ROW, headers=PREDICT, follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"].endswith("/predict")


def test_an_error_is_fastapis_error_body_and_headers(client: TestClient) -> None:
    answer = client.post("/predict", json=ZERO_ROW)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "missing bearer token"}
    assert answer.headers["www-authenticate"] == "Bearer"
    answer = client.post("/predict", json={"instances": [[1]]}, headers=PREDICT)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("row 0 has 1 values; expected")


async def _token(request: Request) -> str:
    return "x"


def _route(router: APIRouter) -> APIRoute:
    route = router.routes[-1]
    assert isinstance(route, APIRoute)
    return route


def test_an_endpoint_with_a_dependency_is_refused() -> None:
    router = APIRouter()

    @router.post("/guarded")
    async def guarded(request: Request, token: str = Depends(_token)) -> Response:
        return Response(token)

    with pytest.raises(TypeError, match="/guarded cannot be served directly"):
        HotRoutes(FastAPI(), [_route(router)])


def test_an_endpoint_with_a_query_parameter_or_another_method_is_refused() -> None:
    router = APIRouter()

    @router.post("/queried")
    async def queried(request: Request, limit: int = 3) -> Response:
        return Response(str(limit))

    @router.put("/put")
    async def put(request: Request) -> Response:
        return Response()

    for route in router.routes:
        assert isinstance(route, APIRoute)
        with pytest.raises(TypeError, match="cannot be served directly"):
            HotRoutes(FastAPI(), [route])


def test_a_crash_in_a_hot_route_is_a_counted_500_and_the_server_goes_on(
    make_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """The service's middlewares sit outside Starlette's ``ServerErrorMiddleware``
    (``service.main.ServiceApp``): on a real uvicorn an unexpected error in ``/predict`` is
    still answered 500, logged with its traceback, counted as a 500 for the route, and the
    next request is served."""
    app = make_app()
    port = free_port()
    server = uvicorn.Server(
        # log_config=None: uvicorn leaves logging alone, so its error log reaches caplog.
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(f"{base}/predict", json=ZERO_ROW, headers=PREDICT).status_code == 200
        store = app.state.container.model_store()
        model = store.current

        def broken(rows: object) -> object:
            raise RuntimeError("onnxruntime fell over")

        object.__setattr__(model, "predict", broken)  # LoadedModel is a frozen dataclass
        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            answer = httpx.post(f"{base}/predict", json=ZERO_ROW, headers=PREDICT)
        assert answer.status_code == 500
        assert answer.text == "Internal Server Error"
        assert "Exception in ASGI application" in caplog.text
        assert "onnxruntime fell over" in caplog.text
        object.__delattr__(model, "predict")
        assert httpx.post(f"{base}/predict", json=ZERO_ROW, headers=PREDICT).status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        counted = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("mlops_http_requests_total{")
        }
        assert (
            counted['mlops_http_requests_total{method="POST",route="/predict",status="500"}'] == 1
        )
        assert (
            counted['mlops_http_requests_total{method="POST",route="/predict",status="200"}'] == 2
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
