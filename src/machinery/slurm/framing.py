"""Replies framed by a marker, so the login shell's own output never mixes into ours.

sshd hands our command to the account's login shell (bash, tcsh, ...), whose rc files may print
banners (module notices, quota warnings). That shell only runs
``echo MARKER; exec bash --noprofile --norc -c '<script, base64>'``: the reply starts after the
marker; what came before it is noise, set aside (and reported once by the caller).
"""

from __future__ import annotations

import base64
import io
import select
import time
from typing import TYPE_CHECKING

from machinery.slurm.transport import ConnectionLost, RemoteTimeout

if TYPE_CHECKING:
    import paramiko

UNFRAMED_LIMIT = 3


def frame(command: str, marker: str) -> str:
    """What the login shell gets: a marker, then our script under a bash with no rc files.

    Base64 keeps the script a single word with no quotes, ``!`` or newlines, so bash, sh and
    tcsh all pass it through unchanged.
    """
    encoded = base64.b64encode(command.encode()).decode()
    inner = f'eval "$(printf %s {encoded} | base64 -d)"'
    return f"echo {marker}; exec bash --noprofile --norc -c '{inner}'"


def first_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


class FramedReader(io.RawIOBase):
    """The channel's stdout from the marker line on; what came before it is ``noise``."""

    def __init__(self, chan: paramiko.Channel, marker: bytes, deadline: float):
        self.chan = chan
        self.marker = marker
        self.deadline = deadline
        self.noise = b""
        self.err = bytearray()
        self.framed = False
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _recv(self) -> bytes:
        while True:
            if self.chan.recv_ready():
                return bytes(self.chan.recv(1 << 16))
            if self.chan.recv_stderr_ready():
                # Read stderr too, or it fills the channel's window and stdout stalls.
                self.err += self.chan.recv_stderr(1 << 16)
                continue
            if self.chan.eof_received or self.chan.closed:
                return b""
            if time.monotonic() > self.deadline:
                raise RemoteTimeout("remote command took too long")
            transport = self.chan.get_transport()
            if transport is None or not transport.is_active():
                raise ConnectionLost("connection closed")
            select.select([self.chan], [], [], 0.2)

    def _fill(self) -> None:
        while not self.framed and not self._eof:
            data = self._recv()
            if not data:
                self._eof = True
                self.noise += self._pending
                self._pending = b""
                return
            self._pending += data
            head, sep, rest = self._pending.partition(self.marker)
            if sep and (not head or head.endswith(b"\n")):
                self.noise, self._pending, self.framed = head, rest, True
            elif len(self._pending) > 1 << 20:  # a login shell that never stops talking
                self._eof = True
                self.noise = self._pending
                self._pending = b""

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._fill()
        if not self.framed:
            return 0
        if not self._pending and not self._eof:
            self._pending = self._recv()
            if not self._pending:
                self._eof = True
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size >= 0:
            return super().read(size) or b""
        chunks: list[bytes] = []
        while True:
            chunk = super().read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def drain(self) -> None:
        while self.read(1 << 16):
            pass
