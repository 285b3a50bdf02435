"""Run every check at once, each in its own thread with its own time budget.

The checks talk to different services, so they run side by side: the slowest one bounds the
wall time, not their sum. Each check also bounds its own calls (socket and HTTP timeouts); the
budget here is the backstop for a call that ignores them: its row says it did not answer in
time, and its thread (a daemon) is left behind rather than waited for.
"""

from __future__ import annotations

import threading
import time

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, fail, skip

# Variables whose values are secrets: never printed, whatever a library puts in a message.
SECRET_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLOPS_SLURM_SSH_KEY",
    "MLOPS_COMMENT_TOKEN",
    "MLOPS_GIT_TOKEN",
    "IMAGE_REGISTRY_PASSWORD",
    "CI_REGISTRY_PASSWORD",
    "CI_JOB_TOKEN",
)


def _guarded(check: Check, env: Env, out: list[Row]) -> None:
    started = time.monotonic()
    try:
        rows = check.run(env)
    except NotConfigured as exc:
        rows = [skip(check.name, str(exc))]
    except Failed as exc:
        rows = [fail(check.name, exc.detail, exc.fix)]
    except Exception as exc:  # noqa: BLE001 - one row for any surprise, never a traceback
        rows = [
            fail(
                check.name,
                f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "run again; if it persists, report it with this line",
            )
        ]
    spent = time.monotonic() - started
    if len(rows) == 1:  # a family of rows (Slurm) times each of its steps itself
        rows = [Row(r.name, r.status, r.detail, r.fix, spent) for r in rows]
    out.extend(rows)


def run_checks(checks: list[Check], env: Env) -> list[Row]:
    """Rows in the order of ``checks``, whatever order the checks finish in."""
    results: list[list[Row]] = [[] for _ in checks]
    threads = []
    started = time.monotonic()
    for check, out in zip(checks, results):
        thread = threading.Thread(
            target=_guarded, args=(check, env, out), name=f"doctor-{check.name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    rows: list[Row] = []
    for check, thread, out in zip(checks, threads, results):
        thread.join(max(0.0, started + check.timeout - time.monotonic()))
        if thread.is_alive():
            rows.append(
                Row(
                    check.name,
                    "fail",
                    f"no answer within {check.timeout:.0f} s",
                    "check that the host and port it names are reachable from here",
                    check.timeout,
                )
            )
        else:
            rows.extend(out)
    return rows


def secrets_of(env: Env) -> list[str]:
    """The secret values to keep out of every line (the longest first: no partial masks)."""
    values = {env.get(name, "") for name in SECRET_VARS}
    key = env.get("MLOPS_SLURM_SSH_KEY", "")
    values.update(line.strip() for line in key.replace("\\n", "\n").splitlines())
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text
