"""``make bench-service``: /predict throughput of the service against a hand-written app.

One run, one model (the pipeline's ``models/``), three servers started side by side:
  ours      the service, auth and metrics on (static bearer token)
  ours-noauth  the same with MLOPS_AUTH_ENABLED=false
  baseline  bench/baseline_app.py: the same multipart /predict, nothing else, plus /ping
each on uvicorn (uvloop, httptools, no access log, one worker) pinned to core 0, loaded by
``wrk`` pinned to core 1 at concurrency 1, 8 and 32 with a Lua script sending a multipart PNG.
Concurrency levels are interleaved across servers so drift in the machine hits all alike.
Prints req/s, p50, p99 and the ratios; writes bench/results/service.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from machinery.registry import Registry

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
BOUNDARY = "----benchboundary7MA4YWxkTrZu0gW"
TOKEN = "bench-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:24]

LUA_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\\n", summary.requests, summary.duration,
    summary.errors.status, errors, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Point:
    server: str
    path: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digit_png() -> bytes:
    """A 64×64 dark-on-light digit: what a user's upload looks like."""
    row = load_digits().data[3]
    pixels = (255 - row.reshape(8, 8) * (255 / 16)).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((64, 64), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def write_script(path: Path, body: bytes, content_type: str, token: str | None) -> Path:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_string(body)}",
        f'wrk.headers["Content-Type"] = "{content_type}"',
    ]
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    path.write_text("\n".join(lines) + "\n" + LUA_DONE)
    return path


def multipart(png: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def start(name: str, app: list[str], env: dict[str, str], logs: Path) -> tuple[str, int, object]:
    port = free_port()
    cmd = [
        "taskset", "-c", "0", str(BIN / "python"), "-m", "uvicorn", *app,
        "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--workers", "1", "--log-level", "warning",
    ]  # fmt: skip
    log = (logs / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start; see {logs / (name + '.log')}")
        time.sleep(0.1)
    return name, port, proc


def wrk(port: int, path: str, script: Path | None, concurrency: int, seconds: float) -> list[str]:
    duration = f"-d{max(1, round(seconds))}s"
    cmd = ["taskset", "-c", "1", WRK, "-t1", f"-c{concurrency}", duration, "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def measure(
    server: str, port: int, path: str, script: Path, concurrency: int, seconds: float
) -> Point:
    lines = wrk(port, path, script, concurrency, seconds)
    result = next(line for line in lines if line.startswith("RESULT "))
    requests, micros, status_errors, socket_errors, p50, p99 = result.split()[1:]
    return Point(
        server=server,
        path=path,
        concurrency=concurrency,
        rps=int(requests) / (int(micros) / 1e6),
        p50_ms=float(p50) / 1000,
        p99_ms=float(p99) / 1000,
        non_2xx=int(status_errors),
        socket_errors=int(socket_errors),
    )


def combine(rounds: list[Point]) -> Point:
    """Rounds of one point: mean req/s, median p50 and p99, summed errors."""
    first = rounds[0]
    return Point(
        server=first.server,
        path=first.path,
        concurrency=first.concurrency,
        rps=statistics.fmean(p.rps for p in rounds),
        p50_ms=statistics.median(p.p50_ms for p in rounds),
        p99_ms=statistics.median(p.p99_ms for p in rounds),
        non_2xx=sum(p.non_2xx for p in rounds),
        socket_errors=sum(p.socket_errors for p in rounds),
    )


def check_answer(port: int, body: bytes, content_type: str, token: str | None) -> None:
    import httpx

    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(f"http://127.0.0.1:{port}/predict", content=body, headers=headers)
    if response.status_code != 200:
        raise SystemExit(f"port {port}: {response.status_code} {response.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured point")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="split each point into rounds, interleaved across servers (shared machines)",
    )
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if not (args.model_dir / "model.onnx").is_file():
        raise SystemExit(f"{args.model_dir}/model.onnx not found: run `make run` first")
    if not shutil.which("taskset") or not Path(WRK).is_file():
        raise SystemExit("needs taskset and wrk (make system-deps)")

    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    registry_dir = work / "registry"
    registry = Registry.from_url(str(registry_dir))
    registry.publish("bench", args.model_dir, metrics={})
    registry.move_alias("bench", "bench", by="bench")
    common = {
        "MLOPS_REGISTRY_URL": str(registry_dir),
        "MLOPS_MODEL_ALIAS": "bench",
        "MLOPS_ALIAS_POLL_SECONDS": "0",
        "MLOPS_MODEL_CACHE_DIR": str(work / "cache"),
        "MLOPS_LOG_LEVEL": "warning",
    }
    ours_app = ["--factory", "service.main:create_app"]
    png = digit_png()
    form = multipart(png)
    form_type = f"multipart/form-data; boundary={BOUNDARY}"
    scripts = {
        "auth": write_script(work / "auth.lua", form, form_type, TOKEN),
        "open": write_script(work / "open.lua", form, form_type, None),
        "raw": write_script(work / "raw.lua", png, "image/png", TOKEN),
    }
    ping_script = work / "ping.lua"
    ping_script.write_text(LUA_DONE)

    servers = []
    try:
        servers.append(
            start(
                "ours",
                ours_app,
                {**common, "MLOPS_ADMIN_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest()},
                work,
            )
        )
        servers.append(
            start("ours-noauth", ours_app, {**common, "MLOPS_AUTH_ENABLED": "false"}, work)
        )
        servers.append(
            start(
                "baseline",
                ["bench.baseline_app:app"],
                {"BENCH_MODEL": str(args.model_dir / "model.onnx")},
                work,
            )
        )
        ports = {name: port for name, port, _ in servers}
        time.sleep(1.0)
        check_answer(ports["ours"], form, form_type, TOKEN)
        check_answer(ports["ours-noauth"], form, form_type, None)
        check_answer(ports["baseline"], form, form_type, None)
        plan = [
            ("ours", "/predict", scripts["auth"]),
            ("ours-noauth", "/predict", scripts["open"]),
            ("baseline", "/predict", scripts["open"]),
        ]
        for name, path, script in plan:  # warm every server up before measuring
            wrk(ports[name], path, script, 8, 2)
        points: list[Point] = []
        per_round = args.seconds / args.rounds
        for concurrency in levels:
            rounds: dict[str, list[Point]] = {name: [] for name, _, _ in plan}
            for _ in range(args.rounds):
                for name, path, script in plan:
                    point = measure(name, ports[name], path, script, concurrency, per_round)
                    rounds[name].append(point)
            for name, _, _ in plan:
                points.append(combine(rounds[name]))
                print(_row(points[-1]), flush=True)
        extra = [
            ("ours", "/predict", scripts["raw"], "ours image/* body"),
            ("baseline", "/ping", ping_script, "baseline /ping"),
            ("ours", "/health/live", ping_script, "ours /health/live"),
        ]
        for name, path, script, label in extra:
            point = measure(name, ports[name], path, script, 8, args.seconds)
            point.server = label
            points.append(point)
            print(_row(point), flush=True)
    finally:
        for _, _, proc in servers:
            proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        for _, _, proc in servers:
            try:
                proc.wait(timeout=10)  # type: ignore[attr-defined]
            except subprocess.TimeoutExpired:
                proc.kill()  # type: ignore[attr-defined]
    _summary(points, levels)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "service.json").write_text(json.dumps([asdict(p) for p in points], indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


def _row(p: Point) -> str:
    errors = f"  non-2xx {p.non_2xx}" if p.non_2xx else ""
    errors += f"  socket errors {p.socket_errors}" if p.socket_errors else ""
    return (
        f"{p.server:<20} {p.path:<13} c={p.concurrency:<3} {p.rps:9.0f} req/s"
        f"  p50 {p.p50_ms:6.2f} ms  p99 {p.p99_ms:6.2f} ms{errors}"
    )


def _summary(points: list[Point], levels: list[int]) -> None:
    by = {(p.server, p.concurrency): p for p in points if p.path == "/predict"}
    print("\nratios (req/s)          " + "".join(f"   c={c:<5}" for c in levels))
    for label, num, den, target in [
        ("ours / hand-written", "ours", "baseline", 1.0),
        ("auth on / auth off", "ours", "ours-noauth", 0.95),
        ("no-auth / hand-written", "ours-noauth", "baseline", 1.0),
    ]:
        ratios = [by[(num, c)].rps / by[(den, c)].rps for c in levels]
        marks = "".join(f"   {r:5.3f}{'' if r >= target else '*'}  " for r in ratios)
        print(f"{label:<24}{marks}  (target ≥ {target})")
    print("* = below target")


if __name__ == "__main__":
    main()
