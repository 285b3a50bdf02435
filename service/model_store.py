"""The model being served, and the only way to change it: a verified, atomic swap.

Swap = download → verify sha256 → load → warm-up prediction → move the alias → switch. The
switch is one reference assignment; a request reads ``current`` once and finishes on that
model, so in-flight requests are never cut over. Swaps (from a request, the alias poller or
start-up) are serialized by one lock, and any failure leaves the old model serving.

The alias moves *before* the switch: if the registry refuses the move, nothing changed here
either, and replicas (which poll the alias) never disagree with the one that was asked. The
poller reads the alias *inside* the lock: a value read before a request's swap moved the alias
would otherwise be applied after it, undoing the swap on this replica for a poll interval.

Start-up loads in the background (``/health/live`` answers during a long download, ready
stays 503 until a model is loaded). A tag that failed to load is retried with a per-tag
exponential back-off instead of being downloaded again on every poll.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

from machinery.modelcard import sha256_file
from machinery.registry import (
    AliasNotFound,
    IntegrityError,
    InvalidMeta,
    Listing,
    ObjectTooLarge,
    Registry,
    RegistryError,
    RegistryUnavailable,
    TagNotFound,
)
from service.drift import MAX_FEATURE_SERIES
from service.inference import InvalidModel, LoadedModel
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("service.model_store")
T = TypeVar("T")
# The longest wait before a tag that failed to load is tried again by the poller.
MAX_BACKOFF_SECONDS = 300.0


class SwapError(Exception):
    """A swap that did not happen; ``status_code`` and ``reason`` say why."""

    status_code = 503
    reason = "error"


class SwapRefused(SwapError):
    status_code = 409
    reason = "pinned"


class UnknownTag(SwapError):
    status_code = 404
    reason = "unknown_tag"


class ChecksumMismatch(SwapError):
    status_code = 422
    reason = "checksum"


class ModelRejected(SwapError):
    status_code = 422
    reason = "invalid_model"


class RegistryDown(SwapError):
    status_code = 503
    reason = "registry_unavailable"


@dataclass(frozen=True)
class _Failed:
    """Back-off state of one tag: how often it failed in a row, and when to try it again."""

    failures: int
    retry_at: float


@dataclass(frozen=True)
class SwapResult:
    tag: str
    previous_tag: str | None
    changed: bool
    seconds: float


class ModelStore:
    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self._current: LoadedModel | None = None
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._failed: dict[str, _Failed] = {}
        self._first_loaded = asyncio.Event()
        metrics.watch_drift(self._class_psi, self._intensity_psi, self._samples)
        metrics.watch_feature_drift(self._feature_psi, MAX_FEATURE_SERIES)
        metrics.watch_outputs(self._output_psi, self._value_histogram)

    @property
    def current(self) -> LoadedModel | None:
        """The model a request should use; read it once per request."""
        return self._current

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin loading the pinned tag or the alias's tag in the background, then poll.

        Waits at most ``first_load_wait_seconds`` for that first load (so a fast registry is
        ready as soon as the server listens); a slower download goes on while the server
        answers ``/health/live`` and ``/health/ready`` says 503. Failures leave it unready and
        are retried on the poll interval (with back-off).
        """
        self._poller = asyncio.create_task(self._load_then_poll(), name="model-loader")
        first = asyncio.create_task(self._first_loaded.wait())
        await asyncio.wait(
            {first, self._poller},
            timeout=self.settings.first_load_wait_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        first.cancel()

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None

    async def _load_then_poll(self) -> None:
        try:
            await self._converge(trigger="startup")
        finally:
            self._first_loaded.set()
        if self.settings.alias_poll_seconds <= 0:
            return
        while True:
            await asyncio.sleep(self.settings.alias_poll_seconds)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                log.exception("alias poll failed unexpectedly")

    async def poll_once(self) -> None:
        """Converge on the alias (or retry the pinned tag if nothing is loaded yet)."""
        await self._converge(trigger="poll")

    async def _converge(self, *, trigger: str) -> None:
        try:
            async with self._lock:
                # Read under the lock: a request swap that moved the alias while this poll
                # waited is seen here, so the poll cannot switch back to what it read before.
                pinned = self.settings.model_tag
                if pinned is not None:
                    if self._current is not None:
                        return
                    tag = pinned
                else:
                    tag = await self._run(self._alias_tag)
                if self._current is not None and self._current.tag == tag:
                    return
                failed = self._failed.get(tag)
                if failed is not None and time.monotonic() < failed.retry_at:
                    return  # it failed lately: not again on every poll
                await self._swap_locked(tag, trigger=trigger, move_alias=False)
        except SwapError as exc:
            if trigger == "startup":
                log.error("no model at start-up: %s (will retry every poll)", exc)
            else:
                log.warning("alias poll: %s", exc)

    def _back_off(self, tag: str, exc: SwapError) -> None:
        """A tag that failed to load waits poll × 2^(n−1), at most MAX_BACKOFF_SECONDS.

        Not for an unreachable registry: that is no fault of the tag, and the next poll's alias
        read fails fast anyway."""
        if isinstance(exc, RegistryDown):
            return
        failures = self._failed[tag].failures + 1 if tag in self._failed else 1
        wait = min(
            max(self.settings.alias_poll_seconds, 0.001) * 2 ** (failures - 1),
            MAX_BACKOFF_SECONDS,
        )
        self._failed[tag] = _Failed(failures, time.monotonic() + wait)
        log.warning("tag %r failed to load %d time(s); next try in %.1fs", tag, failures, wait)

    # --- swapping --------------------------------------------------------------------------

    async def swap(self, tag: str, *, by: str) -> SwapResult:
        """The ``/replace_ml_model`` path: refused while a tag is pinned."""
        if self.settings.model_tag is not None:
            self.metrics.model_swap_failures.labels("request", SwapRefused.reason).inc()
            raise SwapRefused(
                f"this deployment pins tag {self.settings.model_tag!r} (MLOPS_MODEL_TAG);"
                " change the deployment's configuration instead of swapping"
            )
        return await self._swap(tag, trigger="request", move_alias=True, by=by)

    async def _swap(
        self, tag: str, *, trigger: str, move_alias: bool, by: str | None = None
    ) -> SwapResult:
        async with self._lock:
            return await self._swap_locked(tag, trigger=trigger, move_alias=move_alias, by=by)

    async def _swap_locked(
        self, tag: str, *, trigger: str, move_alias: bool, by: str | None = None
    ) -> SwapResult:
        started = time.perf_counter()
        previous = self._current
        try:
            if previous is not None and previous.tag == tag:
                # Already serving it; still make the alias say so (idempotent retry).
                if move_alias:
                    await self._run(lambda: self._move_alias(tag, by))
                return SwapResult(tag, tag, False, time.perf_counter() - started)
            try:
                model = await self._run(lambda: self._load(tag))
            except SwapError as exc:
                self._back_off(tag, exc)
                raise
            self._failed.pop(tag, None)
            if move_alias:
                await self._run(lambda: self._move_alias(tag, by))
        except SwapError as exc:
            self.metrics.model_swap_failures.labels(trigger, exc.reason).inc()
            log.warning("swap to %r (%s) failed: %s", tag, trigger, exc)
            raise
        self._current = model
        seconds = time.perf_counter() - started
        self.metrics.model_swaps.labels(trigger).inc()
        self.metrics.model_swap_duration.observe(seconds)
        self.metrics.show_model(
            tag, self.settings.model_alias, model.card.estimator, self.settings.pinned
        )
        log.info(
            "serving %r (was %r; %s, %.3fs)",
            tag,
            previous.tag if previous else None,
            trigger,
            seconds,
        )
        return SwapResult(tag, previous.tag if previous else None, True, seconds)

    def _load(self, tag: str) -> LoadedModel:
        """Blocking: runs in a worker thread while the old model keeps answering."""
        meta = self._call(lambda: self.registry.meta(tag))
        if meta.card.onnx_sha256 != meta.sha256:
            raise ChecksumMismatch(
                f"tag {tag!r}: registry sha256 {meta.sha256[:12]}… differs from its model card"
                f" ({meta.card.onnx_sha256[:12]}…)"
            )
        workdir = self.settings.model_cache_dir / f"{tag}.{uuid.uuid4().hex[:8]}"
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            limit = self.settings.max_model_bytes
            path = self._call(lambda: self.registry.download(tag, workdir, limit))
            actual = sha256_file(path)
            if actual != meta.sha256:
                raise ChecksumMismatch(
                    f"tag {tag!r}: downloaded sha256 {actual[:12]}… is not {meta.sha256[:12]}…"
                )
            model_bytes = path.read_bytes()
        except OSError as exc:
            log.warning("cannot stage the model in %s: %s", workdir, exc)
            detail = exc.strerror or type(exc).__name__
            raise RegistryDown(f"cannot stage the model in <model cache>: {detail}") from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        try:
            return LoadedModel.load(
                tag,
                model_bytes,
                meta.card,
                threads=self.settings.onnx_threads,
                max_pixels=self.settings.max_image_pixels,
            )
        except InvalidModel as exc:
            raise ModelRejected(f"tag {tag!r}: {exc}") from None

    def _move_alias(self, tag: str, by: str | None) -> None:
        who = self.settings.swapped_by if by is None else f"{self.settings.swapped_by}:{by}"
        self._call(lambda: self.registry.move_alias(self.settings.model_alias, tag, by=who))

    def _alias_tag(self) -> str:
        return self._call(lambda: self.registry.alias(self.settings.model_alias)).tag

    def experiments(self) -> Listing:
        """Blocking: every published tag, newest first, and the unreadable ones apart."""
        listing = self._call(self.registry.listing)
        if not listing.models and not listing.invalid:
            self._must_have_models()
        entries = [e.model_copy(update={"error": self._public(e.error)}) for e in listing.invalid]
        return listing.model_copy(update={"invalid": entries})

    def _must_have_models(self) -> None:
        """A registry with no ``models/`` at all is an empty or unmounted volume (or a wrong
        prefix), not "nothing published yet" that a client could act on: 503, never 200 ``[]``
        or a 404 for a tag that may well exist in the registry meant."""
        if not self._call(lambda: self.registry.store.children("models")):
            raise RegistryDown(
                "registry unavailable: it has no models/ (an empty or unmounted volume, or a"
                " wrong prefix?)"
            )

    def _public(self, text: str) -> str:
        """A message as any token holder may read it: the registry's location (an absolute
        server path, or a bucket and prefix) and the model cache's path are named, not shown.
        The whole message goes to the log for operators."""
        public = text.replace(self.registry.location, "<registry>")
        public = public.replace(str(self.settings.model_cache_dir), "<model cache>")
        if public != text:
            log.info("%s", text)
        return public

    def _call(self, func: Callable[[], T]) -> T:
        """Registry errors become swap errors with an HTTP status and a metric reason; their
        messages name tags and aliases, never a server path (``_public``)."""
        try:
            return func()
        except TagNotFound as exc:
            self._must_have_models()
            raise UnknownTag(self._public(str(exc))) from None
        except AliasNotFound as exc:
            raise UnknownTag(
                f"alias {self.settings.model_alias!r} is not set in the registry"
                f" ({self._public(str(exc))})"
            ) from None
        except IntegrityError as exc:
            raise ChecksumMismatch(self._public(str(exc))) from None
        except ObjectTooLarge as exc:
            raise ModelRejected(
                f"model.onnx is {exc.size} bytes, over MLOPS_MAX_MODEL_BYTES ({exc.limit})"
            ) from None
        except InvalidMeta as exc:
            raise ModelRejected(self._public(str(exc))) from None
        except RegistryUnavailable as exc:
            log.warning("registry unavailable: %s", exc)
            raise RegistryDown(f"registry unavailable: {self._public(str(exc))}") from None
        except RegistryError as exc:
            log.warning("registry error: %s", exc)
            raise RegistryDown(f"registry error: {self._public(str(exc))}") from None

    @staticmethod
    async def _run(func: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(func)

    # --- drift, read at scrape time ----------------------------------------------------------

    def _class_psi(self) -> float:
        model = self._current
        return model.drift.class_psi() if model else float("nan")

    def _intensity_psi(self) -> float:
        model = self._current
        return model.drift.intensity_psi() if model else float("nan")

    def _feature_psi(self) -> list[tuple[str, float]]:
        model = self._current
        return model.drift.feature_psi() if model else []

    def _output_psi(self) -> float:
        model = self._current
        return model.drift.output_psi() if model else float("nan")

    def _value_histogram(self) -> tuple[list[float], list[float], float] | None:
        model = self._current
        return model.drift.value_histogram() if model else None

    def _samples(self) -> float:
        model = self._current
        return model.drift.samples() if model else 0.0
