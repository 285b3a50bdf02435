"""How shell commands reach the login node: the types every transport shares, and ``local``
(here). Transport ``ssh`` lives in ``ssh.py`` and imports from this module, never the other way;
``connect.make_transport`` picks one.

Both run a bash command (``--noprofile --norc``: never the account's rc files) and return its
exit code and output; files travel as tar streams through stdin/stdout (``feed`` writes stdin,
``sink`` reads stdout as it arrives), so one round trip stages a whole snapshot in without
holding it in memory.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from machinery.errors import UserError

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
