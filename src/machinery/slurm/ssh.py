"""Transport ``ssh``: one persistent SSH connection (paramiko, TCP_NODELAY) to the login node,
host key verified, reopened with backoff when it drops; every reply framed (``framing``)."""

from __future__ import annotations

import io
import logging
import secrets
import select
import socket
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO, cast

from machinery.errors import UserError
from machinery.slurm.framing import UNFRAMED_LIMIT, FramedReader, first_line, frame
from machinery.slurm.settings import SlurmSettings
from machinery.slurm.transport import (
    ConnectionLost,
    Feed,
    RemoteTimeout,
    Result,
    ShellNoise,
    Sink,
)

if TYPE_CHECKING:
    import paramiko
    from _typeshed import WriteableBuffer


class Unreachable(UserError):
    """No TCP connection to the login node."""


class HostKeyRejected(UserError):
    """The login node's host key is not the pinned one (or none is pinned for it)."""


class LoginRefused(UserError):
    """The login node refused our key."""


def _load_key(settings: SlurmSettings) -> paramiko.PKey:
    import paramiko

    if settings.ssh_key is not None and settings.ssh_key.get_secret_value().strip():
        text = settings.ssh_key.get_secret_value().replace("\\n", "\n")
        for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return cls.from_private_key(io.StringIO(text))
            except paramiko.SSHException:
                continue
        raise UserError("MLOPS_SLURM_SSH_KEY: not a private key paramiko can read")
    if not settings.ssh_key_file:
        raise UserError("no SSH key: set MLOPS_SLURM_SSH_KEY (the key) or MLOPS_SLURM_SSH_KEY_FILE")
    path = Path(settings.ssh_key_file).expanduser()
    if not path.is_file():
        raise UserError(f"SSH key file {path} not found (MLOPS_SLURM_SSH_KEY_FILE)")
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise UserError(f"SSH key file {path}: cannot read it ({exc})") from None


def _known_hosts_lines(settings: SlurmSettings) -> list[str]:
    value = settings.ssh_known_hosts.strip()
    if value and "\n" not in value and " " not in value and Path(value).expanduser().is_file():
        value = Path(value).expanduser().read_text()
    lines = [ln.strip() for ln in value.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise UserError(
            "no known_hosts line for the login node (set MLOPS_SLURM_SSH_KNOWN_HOSTS); "
            "host keys are never accepted blindly"
        )
    return lines


class _ChannelStdin(io.RawIOBase):
    """The command's stdin, each write sent on the channel as it comes.

    Not paramiko's ``makefile_stdin``: its finalizer flushes its write buffer again even after
    ``close()``, and a feed that writes a tar stream leaves it in a reference cycle (tarfile's
    members point back at their TarFile). The cycle is collected with the buffer finalized
    first, and paramiko prints "Exception ignored ... ValueError: I/O operation on closed
    file" into the job's log. This one holds no buffer, and io's BufferedWriter around it does
    nothing when finalized after either is closed. Closing it ends the command's input.
    """

    def __init__(self, chan: paramiko.Channel):
        self.chan = chan

    def writable(self) -> bool:
        return True

    def write(self, data: WriteableBuffer, /) -> int:
        chunk = bytes(data)  # BufferedWriter hands a view of its buffer, which it reuses
        self.chan.sendall(chunk)
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self.chan.shutdown_write()
        super().close()


def _close(client: paramiko.SSHClient, sock: socket.socket) -> None:
    """Stop paramiko's thread before the socket goes, or it complains on stderr."""
    client.close()
    sock.close()


class SshTransport:
    """One persistent SSH connection (TCP_NODELAY), reopened with backoff when it drops."""

    name = "ssh"

    def __init__(self, settings: SlurmSettings, log: TextIO | None = None):
        if not settings.ssh_host:
            raise UserError("transport ssh needs a host (MLOPS_SLURM_SSH_HOST)")
        self.settings = settings
        self.client: paramiko.SSHClient | None = None
        self.log = log or sys.stderr
        self.reconnects = 0
        self.reconnect_timeout = settings.reconnect_timeout
        self.noise_reported = False

    @property
    def where(self) -> str:
        s = self.settings
        user = f"{s.ssh_user}@" if s.ssh_user else ""
        return f"{user}{s.ssh_host}:{s.ssh_port}"

    def connect(self) -> None:
        import paramiko

        # Our errors are one line each; paramiko's own log would add noise on stderr.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())

        s = self.settings
        key = _load_key(s)
        client = paramiko.SSHClient()
        host_keys = client.get_host_keys()
        for line in _known_hosts_lines(s):
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            if entry is None or entry.key is None:
                raise UserError(f"MLOPS_SLURM_SSH_KNOWN_HOSTS: cannot read the line {line!r}")
            for name in entry.hostnames:
                host_keys.add(name, entry.key.get_name(), entry.key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            sock = socket.create_connection((s.ssh_host, s.ssh_port), timeout=s.connect_timeout)
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise Unreachable(f"cannot reach the login node {self.where}: {reason}") from None
        # Without it every small command waits on Nagle + delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            client.connect(
                s.ssh_host,
                port=s.ssh_port,
                username=s.ssh_user or None,
                pkey=key,
                sock=sock,
                allow_agent=False,
                look_for_keys=False,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
            )
        except paramiko.BadHostKeyException:
            _close(client, sock)
            raise HostKeyRejected(
                f"host key of {self.where} does not match MLOPS_SLURM_SSH_KNOWN_HOSTS "
                "(refusing to connect)"
            ) from None
        except paramiko.AuthenticationException:
            _close(client, sock)
            raise LoginRefused(f"SSH login to {self.where} refused for this key") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _close(client, sock)
            # RejectPolicy's own words for a host that no pinned line names.
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejected(
                    f"host key of {self.where} not found in known_hosts: no line of "
                    "MLOPS_SLURM_SSH_KNOWN_HOSTS names it (refusing to connect)"
                ) from None
            raise UserError(f"SSH to {self.where} failed: {exc}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        self.client = client

    def _reconnect(self, why: BaseException) -> None:
        """Back off 0.1 s → 5 s until the login node answers again or the timeout passes."""
        self.close()
        print(
            f"[slurm] SSH connection lost ({why.__class__.__name__}); reconnecting", file=self.log
        )
        started = time.monotonic()
        delay = 0.1
        while True:
            try:
                self.connect()
            except UserError as exc:
                if time.monotonic() - started + delay > self.reconnect_timeout:
                    raise ConnectionLost(f"{exc} (gave up reconnecting)") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.reconnects += 1
            print(f"[slurm] reconnected after {time.monotonic() - started:.2f} s", file=self.log)
            return

    def run(
        self,
        command: str,
        stdin: bytes | None = None,
        timeout: float = 600,
        *,
        feed: Feed | None = None,
        sink: Sink | None = None,
    ) -> Result:
        import paramiko

        if stdin and feed is None:
            data = stdin

            def feed(f: IO[bytes]) -> None:
                f.write(data)

        unframed = 0
        while True:
            try:
                return self._exec(command, feed, sink, timeout)
            except (paramiko.SSHException, EOFError, OSError, ConnectionLost) as exc:
                self._reconnect(exc)
            except ShellNoise:
                # Nothing ran: safe to ask again, a few times (a flaky rc file), not forever.
                unframed += 1
                if unframed >= UNFRAMED_LIMIT or feed is not None or sink is not None:
                    raise
                time.sleep(0.2 * unframed)

    def _note_noise(self, noise: bytes) -> None:
        if noise.strip() and not self.noise_reported:
            self.noise_reported = True
            print(
                f"[slurm] the login shell writes to stdout: {first_line(noise)!r} "
                "(ignored: commands run under bash --noprofile --norc)",
                file=self.log,
            )

    def _exec(self, command: str, feed: Feed | None, sink: Sink | None, timeout: float) -> Result:
        if self.client is None:
            self.connect()
        assert self.client is not None
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost("not connected")
        chan = transport.open_session(timeout=self.settings.connect_timeout)
        marker = f"mlops-reply-{secrets.token_hex(8)}"
        try:
            chan.exec_command(frame(command, marker))
            if feed is not None:
                try:
                    # Writes of 64 KiB: a channel packet each, not one per small tar block.
                    with io.BufferedWriter(_ChannelStdin(chan), 1 << 16) as stdin:
                        feed(cast(IO[bytes], stdin))
                except OSError:
                    # The command stopped reading (a full disk, say): its stderr says why.
                    if not transport.is_active():
                        raise
            chan.shutdown_write()
            deadline = time.monotonic() + timeout
            reader = FramedReader(chan, marker.encode() + b"\n", deadline)
            out = b""
            if sink is not None:
                sink(cast(IO[bytes], reader))
                reader.drain()
            else:
                out = reader.read()
            if not reader.framed:
                noise = first_line(reader.noise)
                raise ShellNoise(
                    f"the login shell writes to stdout: {noise!r} and our command did not run "
                    f"(check the rc files of {self.where})"
                    if noise
                    else f"the login shell of {self.where} did not run our command"
                )
            self._note_noise(reader.noise)
            err = reader.err
            while not (chan.exit_status_ready() and (chan.eof_received or chan.closed)):
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                    continue
                if not transport.is_active():
                    raise ConnectionLost("connection closed")
                if time.monotonic() > deadline:
                    raise RemoteTimeout(f"remote command took more than {timeout:.0f} s")
                select.select([chan], [], [], 0.2)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(1 << 16)
            status = chan.recv_exit_status()
            # paramiko reports -1 both for a dropped connection and for a command killed by a
            # signal: only the first is worth a reconnect and a retry.
            if status == -1 and not transport.is_active():
                raise ConnectionLost("connection closed")
            return Result(status if status >= 0 else 255, out, bytes(err))
        finally:
            chan.close()

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
                pass
            self.client = None
