"""FastAPI dependencies: the container's components, and access checks per scope.

The container lives on ``app.state`` (one per app, so tests can run several apps side by side)
and every dependency is ``async``: FastAPI runs a plain ``def`` dependency — including a
``Depends(Provide[...])`` marker — in the thread pool, which costs more than the work here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.auth import ADMIN, PREDICT, Principal
from service.container import Container
from service.model_store import ModelStore


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def first_headers(raw: list[tuple[bytes, bytes]], *names: bytes) -> list[str | None]:
    """The first value of each of ``names`` (lower-case, as in an ASGI scope) in one pass over
    the raw header list, None where absent: what ``request.headers.get`` gives for each, without
    building Starlette's ``Headers`` on the prediction routes."""
    found: list[str | None] = [None] * len(names)
    for name, value in raw:
        if name in names:
            at = names.index(name)
            if found[at] is None:
                found[at] = value.decode("latin-1")
    return found


def store_of(request: Request) -> ModelStore:
    store: ModelStore = container_of(request).model_store()
    return store


async def get_store(request: Request) -> ModelStore:
    return store_of(request)


async def require_predict(request: Request) -> Principal:
    authenticator = container_of(request).authenticator()
    return await authenticator.authorize(request.headers.get("authorization"), PREDICT)


async def require_admin(request: Request) -> Principal:
    authenticator = container_of(request).authenticator()
    return await authenticator.authorize(request.headers.get("authorization"), ADMIN)


StoreDep = Annotated[ModelStore, Depends(get_store)]
PredictPrincipal = Annotated[Principal, Depends(require_predict)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
