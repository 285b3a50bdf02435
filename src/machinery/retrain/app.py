"""The receiver: ``POST /alerts`` (Alertmanager's webhook), ``GET /metrics``, ``GET /health``.

Order per request: auth (else 401, nothing read or started), body size (else 413), payload
(else 400/422), mapping (nothing to do: 200 ``ignored``), cool-down (200 ``deduped``), then the
forge, retried with backoff on a 5xx or no connection. A run the forge would not start is one
log line and ``mlops_retrain_failed_total``, answered 200 ``failed`` (Alertmanager would
otherwise resend at once into the same outage); the group is freed, so its next notification
(the route's repeat_interval) tries again.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from machinery.retrain.alerts import Notification, RetrainRequest, to_request
from machinery.retrain.cooldown import CoolDown
from machinery.retrain.forge import ForgeError, Started, Trigger
from machinery.retrain.metrics import ReceiverMetrics
from machinery.retrain.settings import RetrainSettings

log = logging.getLogger("machinery.retrain")


class TooLarge(Exception):
    pass


class Receiver:
    def __init__(
        self,
        settings: RetrainSettings,
        trigger: Trigger,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.trigger = trigger
        self.metrics = ReceiverMetrics.create()
        self.cooldown = CoolDown(settings.cooldown_seconds, clock)
        self._sleep = sleep
        self._lock = asyncio.Lock()
        secret = settings.webhook_secret().encode()
        basic = base64.b64encode(settings.webhook_user.encode() + b":" + secret)
        # Both accepted forms, compared in constant time against the whole header value.
        self._accepted = (b"Bearer " + secret, b"Basic " + basic)

    # -- checks --------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        ok = False
        for accepted in self._accepted:
            ok |= hmac.compare_digest(given, accepted)  # no early exit: same time either way
        return ok

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise TooLarge
        return bytes(body)

    # -- the webhook ---------------------------------------------------------------------------
    async def alerts(self, request: Request) -> Response:
        if not self.authorized(request):
            self.metrics.refused.labels("auth").inc()
            return JSONResponse(
                {"detail": "missing or wrong credentials"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="mlops-retrain"'},
            )
        try:
            raw = await self.read_body(request)
        except TooLarge:
            self.metrics.refused.labels("too_large").inc()
            limit = self.settings.max_body_bytes
            return JSONResponse({"detail": f"body over {limit} bytes"}, status_code=413)
        try:
            note = Notification.model_validate(json.loads(raw))
        except json.JSONDecodeError as exc:
            self.metrics.refused.labels("invalid").inc()
            return JSONResponse({"detail": f"body is not JSON: {exc.msg}"}, status_code=400)
        except ValidationError as exc:
            self.metrics.refused.labels("invalid").inc()
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            detail = f"not an Alertmanager notification: {where}: {first['msg']}"
            return JSONResponse({"detail": detail}, status_code=422)
        wanted = to_request(note, self.settings.alerts)
        if wanted is None:
            self.metrics.ignored.inc()
            return JSONResponse({"outcome": "ignored", "group": note.groupKey})
        return JSONResponse(await self.handle(wanted))

    async def handle(self, wanted: RetrainRequest) -> dict[str, Any]:
        async with self._lock:
            left = self.cooldown.reserve(wanted.group_key)
        if left is not None:
            self.metrics.deduped.labels(wanted.alertname).inc()
            return {
                "outcome": "deduped",
                "group": wanted.group_key,
                "cooldown_left_seconds": round(left, 1),
            }
        try:
            started = await self._start(wanted)
        except ForgeError as exc:
            self.cooldown.release(wanted.group_key)
            self.metrics.failed.labels(wanted.alertname).inc()
            log.error(
                "retrain: no run started for %s (group %s): %s; the group's next "
                "notification tries again",
                wanted.alertname,
                wanted.group_key,
                exc,
            )
            return {"outcome": "failed", "group": wanted.group_key, "detail": str(exc)}
        self.metrics.triggers.labels(wanted.alertname).inc()
        log.info(
            "retrain: %s started for %s (group %s): %s",
            started.describe(),
            wanted.alertname,
            wanted.group_key,
            wanted.reason,
        )
        return {
            "outcome": "triggered",
            "group": wanted.group_key,
            "forge": started.forge,
            "pipeline_id": started.pipeline_id,
            "web_url": started.web_url,
        }

    async def _start(self, wanted: RetrainRequest) -> Started:
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                started = await run_in_threadpool(self.trigger.start, wanted)
            except ForgeError as exc:
                retry = exc.retryable and attempt < attempts
                self.metrics.forge_attempts.labels("retryable" if exc.retryable else "error").inc()
                if not retry:
                    if exc.retryable:
                        raise ForgeError(f"{exc} (after {attempt} attempts)", retryable=True)
                    raise
                await self._sleep(self.settings.backoff_seconds * 2 ** (attempt - 1))
                continue
            self.metrics.forge_attempts.labels("ok").inc()
            return started
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- the rest ------------------------------------------------------------------------------
    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def create_app(receiver: Receiver) -> Starlette:
    app = Starlette(
        routes=[
            Route("/alerts", receiver.alerts, methods=["POST"]),
            Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
            Route("/health", receiver.health, methods=["GET"]),
        ]
    )
    app.state.receiver = receiver
    return app
