"""Where the comment goes, read from the CI environment (GitLab CI or Forgejo Actions)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from machinery.errors import UserError

Forge = Literal["gitlab", "forgejo"]
TOKEN_VAR = "MLOPS_COMMENT_TOKEN"
TOKEN_HELP: dict[Forge, str] = {
    "gitlab": "a project access token with scope api, role Reporter or above",
    "forgejo": "an access token with scope write:issue",
}


class CommentError(Exception):
    """The comment could not be posted: one line, naming what to set."""


@dataclass(frozen=True)
class PullRequest:
    forge: Forge
    server_url: str
    project: str  # GitLab: project id (or path); Forgejo: owner/repo
    number: int
    target_branch: str
    workflow: str
    report_url: str
    pipeline_url: str = ""  # where a failed pipeline's log is: GitLab's pipeline, Forgejo's run


def forge_of(env: Mapping[str, str]) -> Forge | None:
    forced = env.get("MLOPS_COMMENT_FORGE", "").strip().lower()
    if forced:
        if forced not in ("gitlab", "forgejo"):
            raise UserError(f"MLOPS_COMMENT_FORGE={forced!r}: expected gitlab or forgejo")
        return "gitlab" if forced == "gitlab" else "forgejo"
    if env.get("GITLAB_CI"):
        return "gitlab"
    if env.get("FORGEJO_ACTIONS") or env.get("GITHUB_ACTIONS"):
        return "forgejo"
    return None


def _require(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        if env.get(name):
            return env[name].rstrip("/")
    raise CommentError(f"{' or '.join(names)} is not set: not a merge/pull request pipeline?")


def _forgejo_event(env: Mapping[str, str]) -> dict[str, object]:
    path = env.get("GITHUB_EVENT_PATH") or env.get("FORGEJO_EVENT_PATH")
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _target_number(target: str) -> int | None:
    """CML's ``--target``: ``pr`` (this pipeline's) or ``pr/<N>``."""
    if target == "pr":
        return None
    m = re.fullmatch(r"pr/(\d+)", target)
    if not m:
        raise UserError(f"--target {target!r}: expected pr or pr/<number>")
    return int(m.group(1))


def pull_request(env: Mapping[str, str], target: str = "pr") -> PullRequest:
    """This pipeline's merge/pull request; CommentError (one line) when there is none."""
    explicit = _target_number(target)
    forge = forge_of(env)
    if forge is None:
        raise CommentError(
            "not in a GitLab CI or Forgejo Actions job (set MLOPS_COMMENT_FORGE, or preview with"
            " --dry-run)"
        )
    if forge == "gitlab":
        server = _require(env, "CI_SERVER_URL")
        iid = explicit or int(_require(env, "CI_MERGE_REQUEST_IID"))
        job_url = env.get("CI_JOB_URL", "")
        return PullRequest(
            forge=forge,
            server_url=server,
            project=_require(env, "CI_PROJECT_ID"),
            number=iid,
            target_branch=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", ""),
            workflow=env.get("CI_PIPELINE_NAME", ""),
            report_url=f"{job_url}/artifacts/file/reports/report.html" if job_url else "",
            pipeline_url=env.get("CI_PIPELINE_URL", ""),
        )
    server = _require(env, "FORGEJO_SERVER_URL", "GITHUB_SERVER_URL")
    repo = _require(env, "FORGEJO_REPOSITORY", "GITHUB_REPOSITORY")
    event = _forgejo_event(env)
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else {}
    assert isinstance(pr, dict)
    found = event.get("number") or pr.get("number")
    ref = re.fullmatch(r"refs/pull/(\d+)/\w+", env.get("GITHUB_REF", ""))
    number = explicit or (int(str(found)) if found else int(ref.group(1)) if ref else None)
    if number is None:
        raise CommentError(
            "no pull request number in GITHUB_EVENT_PATH's event (not a pull_request run?)"
        )
    base = pr.get("base") if isinstance(pr.get("base"), dict) else {}
    assert isinstance(base, dict)
    run = env.get("GITHUB_RUN_NUMBER", "")
    run_url = f"{server}/{repo}/actions/runs/{run}" if run else ""
    return PullRequest(
        forge=forge,
        server_url=server,
        project=repo,
        number=number,
        target_branch=env.get("GITHUB_BASE_REF") or str(base.get("ref") or ""),
        workflow=env.get("GITHUB_WORKFLOW", ""),
        report_url=run_url,
        pipeline_url=run_url,
    )


def token(env: Mapping[str, str], forge: Forge) -> tuple[str, str]:
    """(token, the variable it came from). GitLab falls back to CI_JOB_TOKEN, which the notes API
    refuses; the back end turns that refusal into a line naming MLOPS_COMMENT_TOKEN."""
    if env.get(TOKEN_VAR):
        return env[TOKEN_VAR], TOKEN_VAR
    if forge == "gitlab" and env.get("CI_JOB_TOKEN"):
        return env["CI_JOB_TOKEN"], "CI_JOB_TOKEN"
    raise CommentError(f"{TOKEN_VAR} is not set ({TOKEN_HELP[forge]})")


def marker(title: str) -> str:
    """The hidden watermark naming the workflow; safe inside an HTML comment."""
    safe = re.sub(r"[^A-Za-z0-9 ._/:@()+-]", "_", title.strip()).replace("--", "-_") or "mlops"
    return f"<!-- mlops-comment: {safe} -->"
