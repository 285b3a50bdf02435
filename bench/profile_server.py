"""Where a served request's time goes: the service or the hand-written app under cProfile, in
one uvicorn worker loaded by ``wrk`` as ``make bench-service`` does (tabular model, one JSON
row), so uvicorn's and httptools' share is in the profile too. Usage::

    .venv/bin/python -m bench.profile_server --target ours --path predict
    .venv/bin/python -m bench.profile_server --target baseline --path v2

Prints the top functions by own time and by cumulative time; cProfile slows everything down
about alike, so read shares, not absolute µs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import (
    TOKEN,
    TOKEN_SHA256,
    Server,
    measure,
    publish,
    sample_rows,
    start,
    stop,
    write_script,
)
from bench.v2 import json_request

PROFILE_ENV = "BENCH_PROFILE_OUT"


def serve_profiled() -> None:
    """The child: run ``python -m service`` or uvicorn on the baseline under cProfile."""
    out = os.environ[PROFILE_ENV]
    profiler = cProfile.Profile()
    argv = sys.argv[2:]  # harness.start's uvicorn options: only the port is taken
    port = int(argv[argv.index("--port") + 1])
    # uvicorn re-raises the SIGTERM it caught once it has shut down: exit through ``finally``.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler.enable()
    try:
        if sys.argv[1] == "ours":
            from service.__main__ import main

            main(["--host", "127.0.0.1", "--port", str(port)])
        else:
            import uvicorn

            uvicorn.run(
                "bench.baseline_app:app",
                host="127.0.0.1",
                port=port,
                loop="uvloop",
                http="httptools",
                access_log=False,
                log_level="warning",
            )
    finally:
        profiler.disable()
        profiler.dump_stats(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=["ours", "baseline"], default="ours")
    parser.add_argument("--path", choices=["predict", "v2"], default="predict")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lines", type=int, default=35)
    args = parser.parse_args()
    from tests.support.fixture_models import build_fixture_model

    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    fixture = build_fixture_model(work / "model", kind="tabular")
    card = fixture.card
    stats_file = work / "profile.out"
    env = {
        **publish(fixture.model_dir, work),
        "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256,
        "BENCH_MODEL_DIR": str(fixture.model_dir),
        PROFILE_ENV: str(stats_file),
    }
    if args.path == "predict":
        path, body = "/predict", sample_rows(card)
    else:
        path, body = f"/v2/models/{card.name}/infer", json_request(card)
    token = TOKEN if args.target == "ours" else None
    script = write_script(work / "load.lua", body, "application/json", token)
    server: Server = start(
        args.target, ["-m", "bench.profile_server", "--serve", args.target], env, work
    )
    try:
        point = measure(server, path, script, args.concurrency, args.seconds)
        print(
            f"{args.target} {path}: {point.rps:.0f} req/s under cProfile, {point.requests} requests"
        )
        if point.non_2xx:
            raise SystemExit(f"{point.non_2xx} non-2xx answers; see {work}")
    finally:
        stop([server])
    stats = pstats.Stats(str(stats_file))
    print_layers(stats, point.requests)
    stats.sort_stats("tottime").print_stats(args.lines)
    stats.sort_stats("cumtime").print_stats(args.lines)


# Which layer a profiled function belongs to, by its file (or, for a C function, its name).
LAYERS = [
    ("uvicorn (protocol, send/receive)", "/uvicorn/"),
    ("starlette", "/starlette/"),
    ("fastapi", "/fastapi/"),
    ("pydantic", "/pydantic"),
    ("the service", "/service/"),
    ("the hand-written app", "/bench/baseline_app"),
    ("machinery (card)", "/src/machinery/"),
    ("onnxruntime", "onnxruntime"),
    ("numpy", "numpy"),
    ("asyncio + the event loop", "asyncio"),
]


def layer_of(filename: str, function: str) -> str:
    where = filename if filename != "~" else function
    for name, marker in LAYERS:
        if marker in where:
            return name
    return "other C calls" if filename == "~" else "other Python"


def print_layers(stats: pstats.Stats, requests: int) -> None:
    """Own time summed by layer, in profiled µs a request: where a served request's time goes
    (cProfile inflates Python calls far more than C, so compare shares between servers)."""
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, _) in raw.items():
        layer = layer_of(filename, function)
        totals[layer] = totals.get(layer, 0.0) + own
    whole = sum(totals.values())
    print(f"own time by layer, profiled µs a request ({requests} requests):")
    for layer, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {layer:34} {seconds / requests * 1e6:8.1f}  {seconds / whole:6.1%}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.argv.pop(1)
        serve_profiled()
    else:
        main()
