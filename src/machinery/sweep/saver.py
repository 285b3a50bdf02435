"""A long-lived ``dvc`` for one copy of the workspace: ``python -m machinery.sweep.saver``.

Importing DVC costs more than saving one experiment (about 0.6 s against 0.3 s here, far more
on a loaded runner), so a sweep's importer keeps one of these per copy and sends it one
``dvc`` command line per point instead of starting ``dvc exp save`` each time.

Protocol: one JSON object a line on stdin, ``{"cwd": DIR, "argv": [...]}``; one JSON object a
line on stdout, ``{"rc": N, "log": "..."}`` (DVC's own output of that command, its tail).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

LOG_TAIL = 4000


# What ``dvc exp save`` imports on its first run (about half of its time): imported while the
# worker waits for the first finished point.
WARM = (
    "dvc.repo",
    "dvc.repo.experiments.save",
    "dvc.repo.experiments.queue.celery",
    "dvc.commands.experiments.save",
)


def serve() -> None:
    import importlib

    from dvc.cli import main as dvc_main

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:  # another DVC version: it is imported on first use instead
            pass

    # Replies go to the original stdout; DVC's own output of each command to a file of its own.
    replies = os.fdopen(os.dup(1), "w")
    while line := sys.stdin.readline():
        job = json.loads(line)
        with tempfile.TemporaryFile() as log:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                os.chdir(job["cwd"])
                rc = dvc_main(list(job["argv"]))
            except BaseException as exc:  # noqa: BLE001 - reported as the command's failure
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                rc = 255
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            log.seek(0)
            text = log.read().decode(errors="replace")[-LOG_TAIL:]
        replies.write(json.dumps({"rc": rc, "log": text}) + "\n")
        replies.flush()
    # Every command's repo was closed by DVC's main and every reply flushed: nothing is left
    # to write. Skipping the interpreter's teardown of DVC's thousands of modules saves the
    # sweep 0.1-0.3 s after its last point, on the clock the user waits on.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    serve()
