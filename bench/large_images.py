"""Normal requests while four clients send large-pixel images (issue 8: a 4000×4000
greyscale+alpha PNG is ~40 KB compressed and 16 MP to decode).

One ``python -m service`` (auth on) that accepts 16 MP images (``MLOPS_MAX_IMAGE_PIXELS``), its
decode budget and decoder processes at their defaults. Rounds alternate: normal traffic alone
(wrk, c=8, the benchmark's usual upload), then the same while a second wrk keeps four
connections sending the large image. Prints normal-request p99 loaded ÷ alone (median and
min–max over rounds; target ≤ 3), what the large images got (200 decoded / 503 busy), and the
memory of the server and its decoder processes against the configured pixel budget.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import (
    FORM_TYPE,
    TOKEN,
    TOKEN_SHA256,
    measure,
    multipart,
    parse,
    row,
    spread,
    start,
    stop,
    tree_rss_mb,
    wrk_command,
    write_script,
)
from service.settings import Settings

SIDE = 4000
BIG_CLIENTS = 4
BYTES_PER_PIXEL = 4  # Pillow stores L as 1 byte, LA/RGB/RGBA as 4


def large_picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("LA", (SIDE, SIDE), (255, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def run(
    common: dict[str, str], work: Path, picture: bytes, rounds: int, seconds: float
) -> dict[str, Any]:
    budget = Settings.model_fields["decode_pixel_budget"].default
    env = {**common, "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256, "MLOPS_MAX_IMAGE_PIXELS": "16000000"}
    normal = write_script(work / "normal.lua", multipart(picture), FORM_TYPE, TOKEN)
    big = large_picture()
    heavy = write_script(work / "large.lua", multipart(big, "large.png"), FORM_TYPE, TOKEN)
    print(f"\nlarge images: {SIDE}×{SIDE} greyscale+alpha PNG, {len(big)} B, {BIG_CLIENTS} clients")
    server = start("ours-large", ["-m", "service"], env, work)
    alone: list[float] = []
    loaded: list[float] = []
    big_ok = big_busy = 0
    peak = 0.0
    try:
        measure(server, "/predict", normal, 8, 2)  # warm-up
        idle = tree_rss_mb(server.proc.pid)
        for _ in range(rounds):
            quiet = measure(server, "/predict", normal, 8, seconds, "normal, alone")
            print(row(quiet), flush=True)
            alone.append(quiet.p99_ms)
            # A 16 MP decode at nice 19 can take seconds: wait for it rather than count a timeout.
            command = wrk_command(server.port, "/predict", heavy, BIG_CLIENTS, seconds + 2, 60)
            flood = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            sampler = _Sampler(server.proc.pid)
            time.sleep(1.0)  # the large images are being decoded
            busy = measure(server, "/predict", normal, 8, seconds, "normal, with large")
            out, _ = flood.communicate()
            peak = max(peak, sampler.stop())
            print(row(busy), flush=True)
            loaded.append(busy.p99_ms)
            large = parse("large images", "/predict", BIG_CLIENTS, out)
            big_busy += large.non_2xx
            big_ok += large.requests - large.non_2xx
        after = tree_rss_mb(server.proc.pid)
    finally:
        stop([server])
    ratios = [b / a for a, b in zip(alone, loaded)]
    decode_mb = budget * BYTES_PER_PIXEL / 2**20
    print(f"normal p99 with ÷ without large images: {spread(ratios)}  (target ≤ 3)")
    print(f"large images: {big_ok} decoded, {big_busy} answered 503 (budget in use)")
    print(
        f"RSS of server + decoders: idle {idle:.0f} MB, peak under load {peak:.0f} MB, after"
        f" {after:.0f} MB; pixel budget {budget} ≈ {decode_mb:.0f} MB of decoded pixels"
        f" (bound ≈ after + {decode_mb:.0f} MB = {after + decode_mb:.0f} MB)"
    )
    return {
        "p99_alone_ms": alone,
        "p99_loaded_ms": loaded,
        "p99_ratio_median": statistics.median(ratios),
        "large_decoded": big_ok,
        "large_busy_503": big_busy,
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
        "pixel_budget": budget,
    }


class _Sampler:
    """Peak resident memory of the server's process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak
