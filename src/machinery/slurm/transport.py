"""How shell commands reach the login node: here (``local``) or over one SSH connection.

Both run a bash command with optional stdin bytes and return its exit code and output; files
travel as tar streams through stdin/stdout, so one round trip stages a whole snapshot in.
"""

from __future__ import annotations

import io
import logging
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from machinery.errors import UserError
from machinery.slurm.settings import SlurmSettings

if TYPE_CHECKING:
    import paramiko

# The only variables the local transport passes to sbatch: sbatch exports its environment into
# the job by default, and a CI runner's environment holds DVC/S3 credentials.
SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


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
        lines = [ln.strip() for ln in self.err.decode(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        return (errors or lines or [f"exit code {self.rc}"])[-1]


class RemoteTimeout(Exception):
    """A remote command ran past its timeout (not a dropped connection: never retried)."""


class ConnectionLost(Exception):
    """The connection to the login node dropped (retried until the reconnect timeout)."""


class Transport(Protocol):
    name: str

    def connect(self) -> None: ...

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600) -> Result: ...

    def close(self) -> None: ...


def scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in SAFE_ENV or k.startswith("SLURM_")}


class LocalTransport:
    """sbatch on this host: a CI runner registered on the login node."""

    name = "local"

    def connect(self) -> None:
        pass

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600) -> Result:
        proc = subprocess.run(
            ["bash", "-c", command],
            input=stdin or b"",
            capture_output=True,
            env=scrubbed_env(),
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

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

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600) -> Result:
        import paramiko

        while True:
            try:
                return self._exec(command, stdin, timeout)
            except (paramiko.SSHException, EOFError, OSError, ConnectionLost) as exc:
                self._reconnect(exc)

    def _exec(self, command: str, stdin: bytes | None, timeout: float) -> Result:
        if self.client is None:
            self.connect()
        assert self.client is not None
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost("not connected")
        chan = transport.open_session(timeout=self.settings.connect_timeout)
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                if chan.recv_ready():
                    out += chan.recv(1 << 16)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                    continue
                # The exit status can overtake buffered output: done only once EOF is in too.
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    break
                if not transport.is_active():
                    raise ConnectionLost("connection closed")
                if chan.closed and not chan.exit_status_ready():
                    raise ConnectionLost("channel closed without an exit status")
                if time.monotonic() > deadline:
                    raise RemoteTimeout(f"remote command took more than {timeout:.0f} s")
                select.select([chan], [], [], 0.5)
            status = chan.recv_exit_status()
            # paramiko reports -1 both for a dropped connection and for a command killed by a
            # signal: only the first is worth a reconnect and a retry.
            if status == -1 and not transport.is_active():
                raise ConnectionLost("connection closed")
            return Result(status if status >= 0 else 255, bytes(out), bytes(err))
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
