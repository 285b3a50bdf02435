"""What the service benchmarks share: the model under test and its request, servers pinned to
core 0, ``wrk`` pinned to core 1 with a Lua script, and the process tree's memory."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from machinery.modelcard import CARD_FILENAME, MODEL_FILENAME, ModelCard, read_card
from machinery.registry import Registry

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
BOUNDARY = "----benchboundary7MA4YWxkTrZu0gW"
TOKEN = "bench-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:24]
TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()

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
    requests: int = 0
    # The server's CPU time (its process tree, user + system) per answered request: how much
    # work a request is, which the machine's other load barely changes (req/s it does).
    cpu_us: float = 0.0


def resolve_model(choice: str, work: Path) -> Path:
    """``auto``: the pipeline's ``models/`` when trained (what a fork serves), else the image
    fixture; ``fixture-image`` / ``fixture-tabular``: the template's own fixture models
    (tests/support/fixture_models.py, independent of ``src/example``); or a directory."""
    if choice == "auto":
        trained = REPO / "models"
        ready = (trained / MODEL_FILENAME).is_file() and (trained / CARD_FILENAME).is_file()
        choice = str(trained) if ready else "fixture-image"
    if choice in ("fixture-image", "fixture-tabular"):
        from tests.support.fixture_models import build_fixture_model

        kind = choice.split("-", 1)[1]
        return build_fixture_model(work / choice, kind=kind).model_dir  # type: ignore[arg-type]
    directory = Path(choice)
    if not (directory / MODEL_FILENAME).is_file():
        raise SystemExit(f"{directory}/{MODEL_FILENAME} not found: run `make run` first")
    return directory


def publish(model_dir: Path, work: Path) -> dict[str, str]:
    """A local registry holding the model under alias ``bench``; the service's env for it."""
    registry_dir = work / "registry"
    registry = Registry.from_url(str(registry_dir))
    registry.publish("bench", model_dir, metrics={})
    registry.move_alias("bench", "bench", by="bench")
    return {
        "MLOPS_REGISTRY_URL": str(registry_dir),
        "MLOPS_MODEL_ALIAS": "bench",
        "MLOPS_ALIAS_POLL_SECONDS": "0",
        "MLOPS_MODEL_CACHE_DIR": str(work / "cache"),
        "MLOPS_LOG_LEVEL": "warning",
    }


def sample_picture(card: ModelCard) -> bytes:
    """A dark-on-light picture at 8× the card's input size: what a user's upload looks like."""
    assert card.preprocessing is not None
    spec = card.preprocessing
    ink = np.zeros((spec.height, spec.width), dtype=np.uint8)
    ink[np.arange(min(spec.height, spec.width)), np.arange(min(spec.height, spec.width))] = 255
    picture = Image.fromarray(255 - ink, mode="L").resize(
        (spec.width * 8, spec.height * 8), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def sample_rows(card: ModelCard) -> bytes:
    return json.dumps({"instances": [[0.5] * card.n_features]}).encode()


def model_card(model_dir: Path) -> ModelCard:
    return read_card(model_dir / CARD_FILENAME)


def multipart(png: bytes, name: str = "upload.png") -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def write_script(
    path: Path,
    body: bytes | None,
    content_type: str,
    token: str | None,
    headers: dict[str, str] | None = None,
) -> Path:
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()]
    if body is not None:
        lines += [
            'wrk.method = "POST"',
            f"wrk.body = {lua_string(body)}",
            f'wrk.headers["Content-Type"] = "{content_type}"',
        ]
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    path.write_text("\n".join(lines) + "\n" + LUA_DONE)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


def start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Server:
    """``argv`` after ``python``: ``-m service`` (what the image runs) or ``-m uvicorn …``."""
    port = free_port()
    if argv[:2] == ["-m", "service"]:
        argv = [*argv, "--host", "127.0.0.1", "--port", str(port)]
    else:
        argv = [*argv, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
                "--no-access-log", "--workers", "1", "--log-level", "warning"]  # fmt: skip
    log = (logs / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN / "python"), *argv],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start; see {logs / (name + '.log')}")
        time.sleep(0.1)
    return Server(name, port, proc)


def stop(servers: list[Server]) -> None:
    for server in servers:
        server.proc.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()


def wrk_command(
    port: int, path: str, script: Path, concurrency: int, seconds: float, timeout: int = 2
) -> list[str]:
    duration = f"-d{max(1, round(seconds))}s"
    return [
        "taskset", "-c", "1", WRK, "-t1", f"-c{concurrency}", duration, "--latency",
        f"--timeout={timeout}s", "-s", str(script), f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip


def parse(server: str, path: str, concurrency: int, output: str) -> Point:
    result = next(line for line in output.splitlines() if line.startswith("RESULT "))
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
        requests=int(requests),
    )


def measure(
    server: Server, path: str, script: Path, concurrency: int, seconds: float, label: str = ""
) -> Point:
    command = wrk_command(server.port, path, script, concurrency, seconds)
    cpu_before = tree_cpu_seconds(server.proc.pid)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
    point = parse(label or server.name, path, concurrency, out)
    point.cpu_us = cpu / max(point.requests, 1) * 1e6
    return point


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (clock ticks, 10 ms)."""
    total, todo = 0, [str(pid)]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        todo += children
    return total / os.sysconf("SC_CLK_TCK")


def check_answer(port: int, body: bytes, content_type: str, token: str | None) -> None:
    import httpx

    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"http://127.0.0.1:{port}/predict", content=body, headers=headers, timeout=60
    )
    if response.status_code != 200:
        raise SystemExit(f"port {port}: {response.status_code} {response.text}")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the decoder processes), in MB."""
    total, todo = 0, [str(pid)]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
        todo += children
    return total / 1024


def spread(values: list[float]) -> str:
    """Median with min–max: one run per configuration is not a verdict on a shared machine."""
    return f"{statistics.median(values):5.2f} [{min(values):.2f}–{max(values):.2f}]"


def row(p: Point) -> str:
    errors = f"  non-2xx {p.non_2xx}" if p.non_2xx else ""
    errors += f"  socket errors {p.socket_errors}" if p.socket_errors else ""
    return (
        f"{p.server:<22} {p.path:<13} c={p.concurrency:<3} {p.rps:9.0f} req/s"
        f"  p50 {p.p50_ms:6.2f} ms  p99 {p.p99_ms:6.2f} ms  CPU {p.cpu_us:6.1f} µs/req{errors}"
    )


def combine(rounds: list[Point]) -> Point:
    """Rounds of one configuration: median req/s, p50 and p99; summed errors."""
    first = rounds[0]
    return Point(
        server=first.server,
        path=first.path,
        concurrency=first.concurrency,
        rps=statistics.median(p.rps for p in rounds),
        p50_ms=statistics.median(p.p50_ms for p in rounds),
        p99_ms=statistics.median(p.p99_ms for p in rounds),
        non_2xx=sum(p.non_2xx for p in rounds),
        socket_errors=sum(p.socket_errors for p in rounds),
        requests=sum(p.requests for p in rounds),
        cpu_us=statistics.median(p.cpu_us for p in rounds),
    )


def summary(
    rounds: dict[tuple[str, int], list[Point]],
    levels: list[int],
    ratios: list[tuple[str, str, str, float | None]],
) -> None:
    """Each ratio from the two configurations of the same round (measured seconds apart): of
    req/s (the targets), then of CPU per request (denominator ÷ numerator, so > 1 is still
    "faster"), which the machine's other load disturbs far less."""
    print("\nratios of req/s, median [min–max] over rounds")
    _ratio_table(rounds, levels, ratios, lambda a, b: a.rps / b.rps, True)
    print("\nthe same as CPU per request (the other ÷ ours: > 1 is less CPU for ours)")
    _ratio_table(
        rounds, levels, ratios, lambda a, b: b.cpu_us / a.cpu_us if a.cpu_us else math.nan, False
    )


def _ratio_table(
    rounds: dict[tuple[str, int], list[Point]],
    levels: list[int],
    ratios: list[tuple[str, str, str, float | None]],
    ratio: Callable[[Point, Point], float],
    with_targets: bool,
) -> None:
    print(f"{'':<24}" + "".join(f"{f'c={c}':<20}" for c in levels))
    for label, num, den, target in ratios:
        cells, met = [], True
        for c in levels:
            values = [ratio(a, b) for a, b in zip(rounds[(num, c)], rounds[(den, c)])]
            cells.append(f"{spread(values):<20}")
            met = met and (target is None or statistics.median(values) >= target)
        verdict = ""
        if target is not None and with_targets:
            verdict = f"target ≥ {target}: {'met' if met else 'NOT MET'}"
        print(f"{label:<24}" + "".join(cells) + verdict)
