"""Files to and from the cluster as tar streams, never whole in memory.

Stage-in writes the snapshot (code, deps, params, the job and submit scripts) straight into
the remote command's stdin; stage-out unpacks the outs as they arrive. Large deps travel once:
the cluster keeps them in ``<workdir>/cache/<sha256>`` and later runs link them from there.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from machinery.errors import UserError
from machinery.files import sha256_file
from machinery.slurm import remote, script
from machinery.slurm.transport import Transport

CACHE_MIN_BYTES = 1 << 20  # smaller deps cost less to send than to look up


@dataclass
class CachePlan:
    """Large deps by hash: those the cluster holds (``cached``) and those it will keep."""

    hashes: dict[str, str] = field(default_factory=dict)  # rel -> sha256
    have: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, root: Path, deps: Iterable[str]) -> CachePlan:
        plan = cls()
        for rel in deps:
            path = root / rel
            if "\n" in rel or path.is_symlink() or path.stat().st_size < CACHE_MIN_BYTES:
                continue
            plan.hashes[rel] = sha256_file(path)
        return plan

    def cached(self) -> dict[str, str]:
        return {r: h for r, h in self.hashes.items() if h in self.have}

    def new(self) -> dict[str, str]:
        return {r: h for r, h in self.hashes.items() if h not in self.have}


class _Counting(io.RawIOBase):
    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.inner.write(data)
        self.count += len(data)
        return len(data)


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o600) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


@dataclass
class Snapshot:
    root: Path
    files: list[str]
    scripts: dict[str, str]  # name in the staging dir -> text (mode 0700)
    plan: CachePlan
    sent: int = 0

    def feed(self, stdin: IO[bytes]) -> None:
        """Write the tar stream (``w|``: nothing is seeked, nothing kept)."""
        counting = _Counting(stdin)
        cached = self.plan.cached()
        with tarfile.open(fileobj=counting, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel in self.files:
                if rel not in cached:
                    tar.add(self.root / rel, arcname=rel, recursive=False)
            for name, text in self.scripts.items():
                _add_text(tar, name, text, 0o700)
            lines = {script.CACHED_NAME: cached, script.CACHE_ADD_NAME: self.plan.new()}
            for name, entries in lines.items():
                if entries:
                    _add_text(tar, name, "".join(f"{h} {r}\n" for r, h in entries.items()))
        self.sent = counting.count


def _local_mode(is_exec: bool) -> int:
    """The mode a file made here gets: the job's umask must not decide it (0600 outs)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if is_exec else 0o666) & ~mask


def stage_out(transport: Transport, layout: script.Layout, root: Path, outs: list[str]) -> None:
    """Unpack the outs as they arrive into a scratch dir beside them, check that the job made
    every one, then move each into place with a rename.

    Runs of one commit share one job (a branch and a merge-request pipeline, or a retried CI
    job in the same checkout), and each copies the outs back. Deleting the outs in place and
    unpacking over them let one run's delete land between another's unpack and its check (seen
    as "the job did not produce models/model_card.json" from a job that did); now every run
    checks its own copy, and a rename is atomic for a file and a moment's gap for a directory.
    """
    failed: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))

    def sink(stream: IO[bytes]) -> None:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.isfile() or member.isdir():
                        member.mode = _local_mode(member.isdir() or bool(member.mode & 0o100))
                    tar.extract(member, scratch, filter="data")
        except (tarfile.TarError, OSError) as exc:
            failed.append(str(exc))  # the exit code and stderr may say more: checked first

    try:
        res = transport.run(remote.render_stage_out(layout, outs), sink=sink)
        if res.rc == 4:
            missing = res.err.decode(errors="replace").split("missing:", 1)[-1].split()
            raise UserError(f"the job did not produce {', '.join(missing)}")
        if res.rc != 0:
            raise UserError(f"copying the outs back failed: {res.error_line}")
        if failed:
            raise UserError(f"copying the outs back failed: {failed[0]}")
        missing = [o for o in outs if not _exists(scratch / o)]
        if missing:
            raise UserError(f"the job did not produce {', '.join(missing)}")
        for rel in outs:
            _move_into_place(scratch / rel, root / rel)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


SCRATCH_PREFIX = ".mlops-stage-out-"


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _move_into_place(new: Path, dest: Path) -> None:
    """``new`` replaces ``dest``: a file in one rename; whatever else is there is renamed aside
    first and removed after (a directory cannot be swapped in one step)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not new.is_dir() or new.is_symlink():
        if not (dest.is_dir() and not dest.is_symlink()):
            os.replace(new, dest)
            return
    for _ in range(10):  # a sharer may rename its own copy in between: set that aside too
        aside = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(dest, aside)
        except FileNotFoundError:
            pass  # nothing there: a first copy back, or a sharer's swap in between
        try:
            os.rename(new, dest)
        except OSError as exc:  # ENOTEMPTY/EEXIST: a sharer's copy landed first
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue
        finally:
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            elif _exists(aside):
                aside.unlink()
        return
    raise UserError(f"could not move {dest.name} into place: other runs kept replacing it")


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
