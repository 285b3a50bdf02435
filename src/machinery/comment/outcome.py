"""How the MR pipeline ended, for a comment job that runs whatever happened before it.

GitLab has no expression for another job's result, so the pipeline job keeps its log
(``make pipeline`` tees ``dvc repro`` into ``reports/ci/pipeline.log``, an artifact kept on
failure too) and the comment job reads it: no log means the pipeline job never ran (an earlier
job failed), an ``ERROR:`` line that it failed, DVC's ``failed to reproduce 'STAGE'`` which stage.
Forgejo says it directly (``needs.pipeline.result`` as ``MLOPS_PIPELINE_RESULT``); its log comes
with the artifact when artifacts are on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from machinery.report import markdown

RESULT_VAR = "MLOPS_PIPELINE_RESULT"
TAIL_LINES = 20
_FAILED_STAGE = re.compile(r"failed to reproduce '([^']+)'")
# CI variables whose values must never reach a comment, whatever a tool printed.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|KEY_ID$|PRIVATE")


@dataclass(frozen=True)
class Outcome:
    result: str  # success | failure | skipped | cancelled
    stage: str = ""  # the DVC stage that failed, when the log names it
    tail: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.result == "success"


def _redact(lines: list[str], env: Mapping[str, str]) -> list[str]:
    secrets = sorted(
        (v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 6),
        key=len,
        reverse=True,
    )
    out = []
    for line in lines:
        for secret in secrets:
            line = line.replace(secret, "[MASKED]")
        out.append(line)
    return out


def read_outcome(env: Mapping[str, str], log: Path | None) -> Outcome:
    """``log`` None: no pipeline to speak of (a local preview): success."""
    said = env.get(RESULT_VAR, "").strip().lower()
    lines = None
    if log is not None and log.is_file():
        lines = log.read_text(errors="replace").splitlines()
    if said:
        result = said
    elif log is None:
        result = "success"
    elif lines is None:
        result = "skipped"
    else:
        result = "failure" if any(ln.startswith("ERROR") for ln in lines) else "success"
    if result == "success" or not lines:
        return Outcome(result)
    stages = [m.group(1) for ln in lines for m in _FAILED_STAGE.finditer(ln)]
    tail = _redact([ln.rstrip() for ln in lines[-TAIL_LINES:]], env)
    return Outcome(result, stages[-1] if stages else "", tail)


def render_outcome(outcome: Outcome, marker: str, link: str) -> str:
    """The comment for a pipeline that did not pass: what failed, the log's tail, where the log
    is. It replaces the last green report, which would otherwise stand for this push."""
    if outcome.result == "skipped":
        head = "The pipeline did not run: an earlier job failed"
    elif outcome.result == "cancelled":
        head = "The pipeline was cancelled"
    elif outcome.stage:
        head = f"Pipeline failed at stage {markdown.code(outcome.stage)}"
    else:
        head = "Pipeline failed"
    where = f"[the pipeline]({link})" if link else "the pipeline's log"
    parts = [
        marker,
        f"**{head}**",
        "",
        f"No model report for this push: nothing was evaluated. The full log is in {where}.",
        "",
    ]
    if outcome.tail:
        body = "\n".join(outcome.tail)
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", body)), default=0))
        parts += [f"Last {len(outcome.tail)} lines of the log:", "", f"{fence}text", body, fence]
        parts.append("")
    return "\n".join(parts)
