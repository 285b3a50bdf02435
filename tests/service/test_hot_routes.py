"""``/predict`` and V2 infer are awaited straight from the middleware stack
(``service/hot_routes.py``): what a client sees stays FastAPI's answer, and an endpoint that
could not be called that way is refused when the app is built, not skipped silently."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
import pytest

from service.hot_routes import HotRoutes
from tests.service.conftest import PREDICT, ZERO_ROW


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
