"""In-process timing and profile of one request, the service against the hand-written app.

No sockets, no uvicorn: each app is called as ASGI with the request wrk sends, so what is left
is the app's own per-request work. Interleaved rounds (A B A B …), median µs per request, and
with ``--profile`` a cProfile of each app's loop sorted by own time — where the time goes, not a
guess. Usage::

    .venv/bin/python -m bench.inprocess --kind tabular-predict
    .venv/bin/python -m bench.inprocess --kind v2-json --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import TOKEN, TOKEN_SHA256, publish, sample_rows
from bench.v2 import json_request

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: ASGI, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(path, headers), receive, send)
    status: int = sent[0]["status"]
    return status


async def loop(
    app: ASGI, path: str, headers: list[tuple[bytes, bytes]], body: bytes, n: int
) -> float:
    # CPU time of this thread, not wall time: other processes on a shared machine take turns
    # on the core without being counted.
    started = time.thread_time()
    for _ in range(n):
        await call(app, path, headers, body)
    return (time.thread_time() - started) / n * 1e6


async def main_async(args: argparse.Namespace) -> None:
    from tests.support.fixture_models import build_fixture_model

    work = Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    fixture = build_fixture_model(work / "model", kind="tabular")
    card = fixture.card
    os.environ.update(
        {**publish(fixture.model_dir, work), "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256}
    )
    os.environ["BENCH_MODEL_DIR"] = str(fixture.model_dir)
    from bench.baseline_app import app as baseline
    from service.main import create_app

    ours = create_app()
    if args.kind == "tabular-predict":
        path = base_path = "/predict"
        body = sample_rows(card)
    else:
        path = base_path = f"/v2/models/{card.name}/infer"
        body = json_request(card)
    common = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    ours_headers = [*common, (b"authorization", f"Bearer {TOKEN}".encode())]
    async with ours.router.lifespan_context(ours):
        for app, p, h in ((ours, path, ours_headers), (baseline, base_path, common)):
            status = await call(app, p, h, body)
            if status != 200:
                raise SystemExit(f"{p} answered {status}")
        timings: dict[str, list[float]] = {"ours": [], "hand-written": []}
        for _ in range(args.rounds):
            timings["ours"].append(await loop(ours, path, ours_headers, body, args.n))
            timings["hand-written"].append(await loop(baseline, base_path, common, body, args.n))
        for name, values in timings.items():
            print(
                f"{name:<13} {statistics.median(values):7.1f} µs CPU/request"
                f" [{min(values):.1f}–{max(values):.1f}] over {args.rounds} rounds of {args.n}"
            )
        speed = statistics.median(timings["hand-written"]) / statistics.median(timings["ours"])
        print(f"hand-written ÷ ours (in-process speed ratio): {speed:.2f}")
        if args.profile:
            for name, app, p, h in (
                ("ours", ours, path, ours_headers),
                ("hand-written", baseline, base_path, common),
            ):
                profiler = cProfile.Profile()
                profiler.enable()
                await loop(app, p, h, body, args.n)
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats(args.sort).print_stats(args.lines)
                print(f"\n===== {name}: cProfile of {args.n} requests, by {args.sort} =====")
                print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["tabular-predict", "v2-json"], default="tabular-predict")
    parser.add_argument("--n", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main_async(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
