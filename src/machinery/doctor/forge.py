"""The forge: its API answers, the comment token may read the project and write MR/PR notes,
and the git token may push (``git push --dry-run``: the forge checks the push right, nothing is
sent).

GitLab says what a token may do (``GET /personal_access_tokens/self``: its scopes). Forgejo has
no such endpoint for a token, so the doctor asks the API itself: a comment with an empty body is
refused 403 by Forgejo's scope check when the token lacks ``write:issue``, and 422 by the body's
validation when it has it; either way nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, ok
from machinery.errors import UserError

TIMEOUT = 5.0
GIT_TIMEOUT = 8.0
COMMENT_TOKEN = "MLOPS_COMMENT_TOKEN"
GIT_TOKEN = "MLOPS_GIT_TOKEN"
GITLAB_NOTE_SCOPES = {"api"}  # read_api cannot write notes; python-gitlab needs the API
REPORTER = 20  # GitLab's access level that may comment on merge requests
FORGE_VARS = (
    "set CI_SERVER_URL + CI_PROJECT_PATH (GitLab) or GITHUB_SERVER_URL + GITHUB_REPOSITORY "
    "(Forgejo) to check it from outside CI"
)


@dataclass(frozen=True)
class Forge:
    kind: str  # "gitlab" or "forgejo"
    server: str
    project: str  # GitLab: id or path; Forgejo: owner/repo
    server_var: str

    @property
    def api(self) -> str:
        return f"{self.server}/api/v4" if self.kind == "gitlab" else f"{self.server}/api/v1"


def forge_from(env: Env) -> Forge:
    from machinery.comment.context import forge_of

    try:
        kind = forge_of(env)
    except UserError as exc:
        raise Failed(str(exc), "set MLOPS_COMMENT_FORGE to gitlab or forgejo") from None
    if kind == "gitlab" or (kind is None and env.get("CI_SERVER_URL")):
        server, project = env.get("CI_SERVER_URL", ""), env.get("CI_PROJECT_ID", "")
        project = project or env.get("CI_PROJECT_PATH", "")
        if server and project:
            return Forge("gitlab", server.rstrip("/"), project, "CI_SERVER_URL")
    else:
        server = env.get("FORGEJO_SERVER_URL") or env.get("GITHUB_SERVER_URL", "")
        repo = env.get("FORGEJO_REPOSITORY") or env.get("GITHUB_REPOSITORY", "")
        if server and repo:
            return Forge("forgejo", server.rstrip("/"), repo, "GITHUB_SERVER_URL")
    raise NotConfigured(f"no forge known: {FORGE_VARS}")


def _headers(forge: Forge, token: str) -> dict[str, str]:
    if not token:
        return {}
    return (
        {"PRIVATE-TOKEN": token} if forge.kind == "gitlab" else {"Authorization": f"token {token}"}
    )


def _get(forge: Forge, path: str, token: str = "", method: str = "GET", **kw: Any) -> Any:
    """One API call; unreachable is a Failed naming the server variable."""
    import httpx

    try:
        return httpx.request(
            method, forge.api + path, headers=_headers(forge, token), timeout=TIMEOUT, **kw
        )
    except httpx.HTTPError as exc:
        raise Failed(
            f"cannot reach {forge.api} ({type(exc).__name__})", f"check {forge.server_var}"
        ) from None


def api_answers(env: Env) -> list[Row]:
    forge = forge_from(env)
    answer = _get(forge, "/version", env.get(COMMENT_TOKEN, ""))
    try:
        body = answer.json()
    except ValueError:
        body = None
    # GitLab's /version needs a token (401 without one): a JSON 401 is still GitLab answering.
    if not isinstance(body, dict) or answer.status_code not in (200, 401, 403):
        raise Failed(
            f"{forge.api}/version answered {answer.status_code}, not the {forge.kind} API",
            f"check {forge.server_var} (the forge's base URL, without /api)",
        )
    version = body.get("version", "version hidden without a token")
    return [ok("forge: API", f"{forge.kind} at {forge.server} ({version})")]


def _gitlab_comment_token(forge: Forge, token: str) -> str:
    fix = f"set {COMMENT_TOKEN} to a project access token with scope api, role Reporter"
    me = _get(forge, "/personal_access_tokens/self", token)
    if me.status_code == 401:
        raise Failed(f"GitLab rejected {COMMENT_TOKEN} (401: unknown, revoked or expired)", fix)
    if me.status_code != 200:
        raise Failed(f"GitLab answered {me.status_code} on the token's own details", fix)
    info = me.json()
    scopes = set(info.get("scopes") or [])
    expires = info.get("expires_at")
    if info.get("revoked") or info.get("active") is False:
        raise Failed(f"{COMMENT_TOKEN} is revoked or inactive", fix)
    if expires and dt.date.fromisoformat(str(expires)[:10]) < dt.date.today():
        raise Failed(f"{COMMENT_TOKEN} expired on {expires}", fix)
    if not scopes & GITLAB_NOTE_SCOPES:
        raise Failed(
            f"{COMMENT_TOKEN} has scopes {', '.join(sorted(scopes)) or 'none'}: writing merge"
            " request notes needs api",
            fix,
        )
    project = _get(forge, f"/projects/{_quote(forge.project)}", token)
    if project.status_code != 200:
        raise Failed(
            f"{COMMENT_TOKEN} cannot see project {forge.project} ({project.status_code})",
            "add the token's user to the project (Reporter), or check CI_PROJECT_ID / PATH",
        )
    access = project.json().get("permissions") or {}
    levels = [(access.get(k) or {}).get("access_level") or 0 for k in access]
    if levels and max(levels) < REPORTER:
        raise Failed(f"{COMMENT_TOKEN}'s role on {forge.project} is below Reporter", fix)
    return f"scopes {', '.join(sorted(scopes))}; reads project {forge.project}"


def _forgejo_comment_token(forge: Forge, token: str, env: Env) -> str:
    fix = f"set {COMMENT_TOKEN} to a token with write:issue and read:repository"
    repo = _get(forge, f"/repos/{forge.project}", token)
    if repo.status_code == 401:
        raise Failed(f"Forgejo rejected {COMMENT_TOKEN} (401)", fix)
    if repo.status_code != 200:
        raise Failed(
            f"{COMMENT_TOKEN} cannot read {forge.project} ({repo.status_code})",
            f"{fix}; check GITHUB_REPOSITORY and that the token's user sees the repository",
        )
    index = _pull_number(env) or 1
    probe = _get(
        forge, f"/repos/{forge.project}/issues/{index}/comments", token, "POST", json={"body": ""}
    )
    if probe.status_code in (401, 403):
        message = _message(probe)
        raise Failed(
            f"{COMMENT_TOKEN} may not write comments ({probe.status_code}: {message})", fix
        )
    if probe.status_code < 300:  # validation should have refused an empty body
        raise Failed(
            f"Forgejo accepted an empty comment on #{index}",
            "delete that empty comment; report this Forgejo version",
        )
    return f"reads {forge.project}; write:issue accepted (empty probe refused, nothing written)"


def _pull_number(env: Env) -> int | None:
    path = env.get("GITHUB_EVENT_PATH") or env.get("FORGEJO_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text()) if path else {}
        number = event.get("number") if isinstance(event, dict) else None
        return int(str(number)) if number else None
    except (OSError, ValueError, TypeError):
        return None


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message", ""))[:160]
    except (ValueError, AttributeError):
        return str(response.text)[:160]


def _quote(project: str) -> str:
    from urllib.parse import quote

    return quote(project, safe="")


def comment_token(env: Env) -> list[Row]:
    forge = forge_from(env)
    token = env.get(COMMENT_TOKEN, "")
    if not token:
        raise NotConfigured(f"{COMMENT_TOKEN} not set: the report comment is skipped")
    if forge.kind == "gitlab":
        return [ok("forge: comment token", _gitlab_comment_token(forge, token))]
    return [ok("forge: comment token", _forgejo_comment_token(forge, token, env))]


def git_push(env: Env) -> list[Row]:
    from machinery.ci.git import push_target

    if not env.get(GIT_TOKEN):
        raise NotConfigured(
            f"{GIT_TOKEN} not set (main needs it: experiment tags, the bump; merge requests for"
            " a sweep: section's experiments)"
        )
    try:
        url, git_env = push_target(dict(env))
    except UserError as exc:
        raise Failed(str(exc), "set MLOPS_GIT_PUSH_URL") from None
    fix = (
        f"set {GIT_TOKEN} to a token with write_repository (GitLab) / write:repository "
        "(Forgejo) of a user allowed to push to main"
    )
    probe = "refs/heads/mlops-doctor-probe"
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True)
    if head.returncode != 0:
        raise Failed(
            "no commit here to dry-run a push with",
            "run mlops doctor in the repository's checkout (after its first commit)",
        )
    try:
        done = subprocess.run(
            ["git", "push", "--dry-run", "--porcelain", url, f"HEAD:{probe}"],
            # git's HTTP has no timeout of its own: give up on a server silent for 5 s.
            env={
                **git_env,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_HTTP_LOW_SPEED_LIMIT": "1",
                "GIT_HTTP_LOW_SPEED_TIME": "5",
            },
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise Failed(f"git push --dry-run to {url} took over {GIT_TIMEOUT:.0f} s", fix) from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        why = next(
            (ln for ln in lines if "fatal" in ln or "error" in ln), lines[-1] if lines else ""
        )
        if "error: 403" in why:
            why = f"the forge refused {GIT_TOKEN} the push (403)"
        elif "could not read Username" in why or "Authentication failed" in why:
            why = f"the forge rejected {GIT_TOKEN} (401: unknown, revoked or expired)"
        raise Failed(f"git push --dry-run to {url}: {why.strip()}", fix)
    return [ok("forge: git push", f"git push --dry-run to {url} accepted")]


CHECKS = [
    Check("forge: API", 7.0, api_answers),
    Check("forge: comment token", 12.0, comment_token),
    Check("forge: git push", 10.0, git_push),
]
