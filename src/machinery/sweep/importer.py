"""Finished points into DVC experiments, while the rest of the array still runs.

A point's import used to be a fresh copy of the workspace and a fresh ``dvc exp save``
process: on a two-core runner that took longer than the array itself. Here a few workers
(``WORKERS``) each keep ONE copy and ONE long-lived DVC process (``machinery.sweep.saver``)
for the whole sweep; a point only swaps its ``params.yaml``, outs and report into the copy
and saves. Points are handed over as soon as their task is done, so most of the import
overlaps the tasks still running.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from machinery.errors import UserError
from machinery.sweep.copies import PARAMS_FILE, Copy, git_env, read_metrics

# Two cores on the runners this was measured on: more workers only contend for them.
WORKERS = 2
LOCK_FILE = "dvc.lock"


@dataclass
class Imported:
    metrics: dict[str, Any] = field(default_factory=dict)
    experiment: str | None = None
    error: str = ""


@dataclass
class Job:
    name: str
    params: dict[str, Any]
    outs_dir: Path  # the point's outs, laid out as in the workspace
    report: Callable[[Path], None]  # writes the point's own files (its Slurm record) in a copy
    future: Future[Imported]


class Saver:
    """One ``python -m machinery.sweep.saver`` working in one copy."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        env = {**git_env(), "DVC_NO_ANALYTICS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "machinery.sweep.saver"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def warm(self) -> None:
        """A first command loads what every later one reuses (the pipeline, DVC's lazy
        imports): done here, while the tasks still run, its outcome does not matter."""
        try:
            self(["status"])
        except UserError:
            pass

    def __call__(self, argv: list[str]) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cwd": str(self.cwd), "argv": argv}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise UserError(f"dvc {' '.join(argv[:2])}: the DVC worker ended")
        reply = json.loads(line)
        if reply["rc"] != 0:
            lines = [ln for ln in str(reply["log"]).splitlines() if ln.strip()]
            raise UserError(f"dvc {' '.join(argv[:2])}: {lines[-1] if lines else reply['rc']}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Importer:
    def __init__(
        self,
        root: Path,
        files: list[str],
        base_params: dict[str, Any],
        cache: str,
        parent: Path,
        stages: list[str],
        outs: list[str],
        metrics: list[str],
        workers: int = WORKERS,
    ):
        self.root, self.files, self.base = root, files, base_params
        self.cache, self.parent = cache, parent
        self.stages, self.outs, self.metrics = stages, outs, metrics
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.workers = workers
        self.threads: list[threading.Thread] = []

    def submit(
        self, name: str, params: dict[str, Any], outs_dir: Path, report: Callable[[Path], None]
    ) -> Future[Imported]:
        future: Future[Imported] = Future()
        self.jobs.put(Job(name, params, outs_dir, report, future))
        self.start(self.jobs.qsize())
        return future

    def close(self, abandon: bool = False) -> None:
        """Waits for every point handed over (``abandon``: only for the ones being saved);
        then the workers' copies are gone."""
        while abandon:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_result(Imported(error="not imported: the sweep was stopped"))
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []

    def start(self, workers: int) -> None:
        """Up to ``workers`` workers, started now: their copy and DVC process are made while
        the tasks still queue and run, not after the first point is done."""
        while len(self.threads) < min(workers, self.workers):
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _work(self) -> None:
        copy: Copy | None = None
        saver: Saver | None = None
        broken = ""
        try:
            try:
                copy = Copy.make(self.root, self.files, [], self.base, self.cache, self.parent)
                saver = Saver(copy.path)
                saver.warm()
            except UserError as exc:
                broken = str(exc)
            except Exception as exc:  # noqa: BLE001 - the points fail, not the sweep
                broken = f"import failed: {exc}"
            while (job := self.jobs.get()) is not None:
                if copy is None or saver is None:
                    job.future.set_result(Imported(error=broken))
                    continue
                try:
                    job.future.set_result(self._one(copy, saver, job))
                except UserError as exc:
                    job.future.set_result(Imported(error=str(exc)))
                except Exception as exc:  # noqa: BLE001 - the point fails, not the sweep
                    job.future.set_result(Imported(error=f"import failed: {exc}"))
        finally:
            if saver is not None:
                saver.close()
            if copy is not None:
                copy.remove()

    def _one(self, copy: Copy, saver: Saver, job: Job) -> Imported:
        # The copy as the workspace left it, then this point's params and outs over it.
        for out in self.outs:
            target = copy.path / out
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        lock = self.root / LOCK_FILE
        if lock.is_file():
            shutil.copy2(lock, copy.path / LOCK_FILE)
        else:
            (copy.path / LOCK_FILE).unlink(missing_ok=True)
        (copy.path / PARAMS_FILE).write_text(yaml.safe_dump(job.params, sort_keys=False))
        for path in job.outs_dir.rglob("*"):
            if path.is_file():
                dest = copy.path / path.relative_to(job.outs_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(path, dest)
        job.report(copy.path)
        metrics = read_metrics(copy.path, self.metrics)
        return Imported(metrics, copy.save(job.name, self.stages, saver))


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (the scratch dir is on the same disk; nothing writes these files), else a
    copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
