"""Giving up and cancelling a shared job under its lease, for a single offload and a sweep's
array alike: the remote side (``remote.render_release``/``render_cancel``) is the same, and so
is what the user is told."""

from __future__ import annotations

from collections.abc import Callable

from machinery.slurm import remote
from machinery.slurm.polling import fields
from machinery.slurm.script import Layout
from machinery.slurm.transport import Transport

# A cancelled CI job has seconds before it is killed: the cancel does not wait minutes for a
# dead login node to come back (reconnect_timeout), only this long.
CANCEL_RECONNECT_S = 20.0


def release(transport: Transport, layout: Layout | None, job_id: str | None, done: bool) -> None:
    """Give up this run's lease (best effort: a lease also expires on its own)."""
    if layout is None or job_id is None:
        return
    try:
        transport.run(remote.render_release(layout, done), timeout=30)
    except Exception:  # noqa: BLE001 - the run's outcome is already decided
        pass


def cancel(
    transport: Transport,
    layout: Layout | None,
    job_id: str | None,
    finished: bool,
    lease_ttl: float,
    say: Callable[[str], None],
    *,
    noun: str,
    cancelled: str,
) -> None:
    """Cancel the job (``noun``: "job" or "array") unless other runs hold it; ``cancelled`` is
    what the user is told when it was. Nothing to do before staging began (no ``layout``) or
    once the job has ended (``finished``)."""
    if layout is None:
        return
    if finished:
        say(f"{noun} {job_id} had already ended: nothing to cancel")
        return
    what = f"{noun} {job_id}" if job_id else "the submission"
    if hasattr(transport, "reconnect_timeout"):
        transport.reconnect_timeout = min(transport.reconnect_timeout, CANCEL_RECONNECT_S)
    cmd = remote.render_cancel(job_id, layout, lease_ttl)
    try:
        res = transport.run(cmd, timeout=30)
    except Exception as exc:  # noqa: BLE001 - report and still exit non-zero
        say(f"could not cancel {what}: {exc}")
        return
    held = fields(res.text).get("held")
    if res.rc == 0 and held:
        say(f"left {what} running: {held} other run(s) still wait for it")
    elif res.rc == 0:
        say(f"cancelled {what}{cancelled}")
    else:
        say(f"could not cancel {what}: {res.error_line}")
