"""Where an uploaded image is decoded, decided by its pixels (read from the header).

Small images (``inline_decode_max_pixels``) decode on the event loop: a 256×256 picture costs
0.05–1 ms, less than any hop. Bigger ones go to a small pool of low-priority decoder
*processes*, admitted against a pixel budget (``decode_pixel_budget``): when the images being
decoded already hold the budget, the request is answered 503 with ``Retry-After`` at once
instead of queueing, so decoding memory is bounded by configuration (a decoded pixel costs at
most 4 bytes in Pillow, plus one small copy per conversion).

Why processes and not threads, measured here (2 cores, event loop and decoders on one core,
two decoders looping a 4000×4000 greyscale+alpha PNG, event-loop tick latency): threads gave a
p99 of 19–23 ms against 3.4–4.1 ms idle, and niced threads a p99 of 8–11 ms with stalls up to
160–260 ms: the decoder holds the GIL between Pillow's C calls, and a low-priority thread that
holds the GIL stalls the loop while it waits for a CPU (priority inversion). Niced processes
share no GIL: p99 7–9 ms, worst 15–56 ms, on the same noisy machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import numpy.typing as npt

from service.preprocessing import ImagePreprocessor, ImageRejected, disable_pillow_bomb_guard

# A big decode takes 0.1–2 s here; a client told to come back in a second mostly finds room.
RETRY_AFTER_SECONDS = 1
PARENT_CHECK_SECONDS = 1.0


class DecodeBusy(Exception):
    """The pixel budget for big decodes is in use: 503 with ``Retry-After``."""

    retry_after = RETRY_AFTER_SECONDS


def _start_worker(nice: int) -> None:
    # Lower CPU priority: a decode yields the core to the event loop's requests.
    try:
        os.nice(nice)
    except OSError:  # pragma: no cover - not permitted on this platform
        pass
    disable_pillow_bomb_guard()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A decoder whose service died (SIGKILL, OOM kill, a crash) would wait for work forever:
    each worker holds the write end of its own call queue, so it never sees end-of-file. Outside
    a container nothing else reaps it (tests, ``make serve``): leave when the parent is gone."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def _decode(preprocessor: ImagePreprocessor, data: bytes) -> npt.NDArray[np.float32]:
    return preprocessor(data)


class ImageDecoder:
    def __init__(
        self, inline_max_pixels: int, pixel_budget: int, processes: int, nice: int = 10
    ) -> None:
        self.inline_max_pixels = inline_max_pixels
        self.pixel_budget = pixel_budget
        self.processes = processes
        self.nice = nice
        self.in_use = 0  # pixels admitted; only touched on the event loop, so no lock
        self._pool: ProcessPoolExecutor | None = None

    async def decode(self, preprocessor: ImagePreprocessor, data: bytes) -> npt.NDArray[np.float32]:
        image = preprocessor.open(data)  # header only; over the pixel limit → 413
        width, height = image.size
        pixels = width * height
        if pixels <= self.inline_max_pixels:
            return preprocessor.finish(image)
        image.close()
        if pixels > self.pixel_budget:
            raise ImageRejected(
                f"image is {width}×{height} = {pixels} pixels; the decode budget is"
                f" {self.pixel_budget} pixels",
                status_code=413,
            )
        if self.in_use + pixels > self.pixel_budget:
            raise DecodeBusy()
        self.in_use += pixels
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor(), _decode, preprocessor, data)
        except BrokenProcessPool:
            # A decoder died (killed for memory, say): start afresh next time, ask to retry.
            self._reset()
            raise DecodeBusy() from None
        finally:
            self.in_use -= pixels

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # "spawn": no fork of a process that runs ONNX Runtime and event-loop threads, and
            # no socket file (forkserver's) on a read-only root filesystem.
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.nice,),
            )
        return self._pool

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._reset()
