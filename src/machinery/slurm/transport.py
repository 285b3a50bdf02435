"""How shell commands reach the login node: here (``local``) or over one SSH connection.

Both run a bash command and return its exit code and output; files travel as tar streams
through stdin/stdout (``feed`` writes stdin, ``sink`` reads stdout as it arrives), so one round
trip stages a whole snapshot in without holding it in memory.

Over SSH the command never depends on the account's login shell: sshd hands it to that shell
(bash, tcsh, ...), which may print banners from its rc files. So the shell only runs
``echo MARKER; exec bash --noprofile --norc -c '<script, base64>'``: the reply starts after the
marker, and whatever the rc files wrote before it is set aside (and reported once).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, TextIO, cast

from machinery.errors import UserError
from machinery.slurm.settings import SlurmSettings

if TYPE_CHECKING:
    import paramiko

# The only variables the local transport passes to sbatch: sbatch exports its environment into
# the job by default, and a CI runner's environment holds DVC/S3 credentials.
SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


Feed = Callable[[IO[bytes]], None]
Sink = Callable[[IO[bytes]], None]
# Summary lines that name no cause: the line before them does.
_NO_CAUSE = ("Exiting with failure status due to previous errors", "Error is not recoverable")
_CAUSES = ("error", "no space left", "permission denied", "cannot", "not found", "disk quota")


def first_cause(text: str, default: str) -> str:
    """The first line that names what went wrong (tar's closing summary names nothing)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not any(s in ln for s in _NO_CAUSE)]
    causes = [ln for ln in lines if any(c in ln.lower() for c in _CAUSES)]
    return (causes or lines[-1:] or [default])[0]


@dataclass(frozen=True)
class Result:
    rc: int
    out: bytes
    err: bytes

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def error_line(self) -> str:
        return first_cause(self.err.decode(errors="replace"), f"exit code {self.rc}")


class ShellNoise(UserError):
    """The login shell never ran our command (its rc files wrote instead, or exited)."""


class RemoteTimeout(Exception):
    """A remote command ran past its timeout (not a dropped connection: never retried)."""


class ConnectionLost(Exception):
    """The connection to the login node dropped (retried until the reconnect timeout)."""


class Transport(Protocol):
    name: str

    def connect(self) -> None: ...

    def run(
        self,
        command: str,
        stdin: bytes | None = None,
        timeout: float = 600,
        *,
        feed: Feed | None = None,
        sink: Sink | None = None,
    ) -> Result: ...

    def close(self) -> None: ...


def scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in SAFE_ENV or k.startswith("SLURM_")}


class LocalTransport:
    """sbatch on this host: a CI runner registered on the login node."""

    name = "local"

    def connect(self) -> None:
        pass

    def run(
        self,
        command: str,
        stdin: bytes | None = None,
        timeout: float = 600,
        *,
        feed: Feed | None = None,
        sink: Sink | None = None,
    ) -> Result:
        if feed is None and sink is None:
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-c", command],
                input=stdin or b"",
                capture_output=True,
                env=scrubbed_env(),
                timeout=timeout,
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)
        # stderr to a file: a pipe nobody reads could fill and stall the command.
        with tempfile.TemporaryFile() as err:
            with subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=scrubbed_env(),
            ) as child:
                assert child.stdin is not None and child.stdout is not None
                try:
                    if feed is not None:
                        feed(child.stdin)
                    elif stdin:
                        child.stdin.write(stdin)
                except BrokenPipeError:
                    pass  # the command ended early: its exit code and stderr say why
                child.stdin.close()
                out = b""
                if sink is not None:
                    sink(child.stdout)
                    child.stdout.read()
                else:
                    out = child.stdout.read()
                rc = child.wait(timeout=timeout)
            err.seek(0)
            return Result(rc, out, err.read())

    def close(self) -> None:
        pass


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


UNFRAMED_LIMIT = 3


def frame(command: str, marker: str) -> str:
    """What the login shell gets: a marker, then our script under a bash with no rc files.

    Base64 keeps the script a single word with no quotes, ``!`` or newlines, so bash, sh and
    tcsh all pass it through unchanged.
    """
    encoded = base64.b64encode(command.encode()).decode()
    inner = f'eval "$(printf %s {encoded} | base64 -d)"'
    return f"echo {marker}; exec bash --noprofile --norc -c '{inner}'"


def _first_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


class _FramedReader(io.RawIOBase):
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
            raise UserError(f"cannot reach the login node {self.where}: {reason}") from None
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
            raise UserError(
                f"host key of {self.where} does not match MLOPS_SLURM_SSH_KNOWN_HOSTS "
                "(refusing to connect)"
            ) from None
        except paramiko.AuthenticationException:
            _close(client, sock)
            raise UserError(f"SSH login to {self.where} refused for this key") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _close(client, sock)
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
                f"[slurm] the login shell writes to stdout: {_first_line(noise)!r} "
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
                    with chan.makefile_stdin("wb") as stdin:
                        feed(cast(IO[bytes], stdin))
                except OSError:
                    # The command stopped reading (a full disk, say): its stderr says why.
                    if not transport.is_active():
                        raise
            chan.shutdown_write()
            deadline = time.monotonic() + timeout
            reader = _FramedReader(chan, marker.encode() + b"\n", deadline)
            out = b""
            if sink is not None:
                sink(cast(IO[bytes], reader))
                reader.drain()
            else:
                out = reader.read()
            if not reader.framed:
                noise = _first_line(reader.noise)
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


def make_transport(settings: SlurmSettings) -> Transport:
    if settings.transport == "ssh":
        return SshTransport(settings)
    return LocalTransport()
