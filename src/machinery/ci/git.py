"""Git as CI jobs use it: run a command, and push with the CI token when one is set.

Pushes go to ``origin`` as the runner checked it out, unless ``MLOPS_GIT_TOKEN`` is set: then to
the project's own URL on the forge (derived from the CI variables, or ``MLOPS_GIT_PUSH_URL``)
with the token in an ``Authorization`` header passed through git's environment, so it never
appears in argv, in ``.git/config`` or in the log. GitLab's ``CI_JOB_TOKEN`` cannot push; a
project access token (``write_repository``) or a Forgejo token (``write:repository``) can.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from machinery.errors import UserError

TOKEN_ENV = "MLOPS_GIT_TOKEN"
PUSH_URL_ENV = "MLOPS_GIT_PUSH_URL"
# Any user name works with a token as the password on both forges; GitLab documents this one.
TOKEN_USER_ENV = "MLOPS_GIT_TOKEN_USER"


class GitError(UserError):
    """A git command failed; the message carries git's own last line."""


def git(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        raise GitError(f"git not runnable: {exc}") from None
    if check and done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise GitError(f"git {args[0]} failed: {last[0]}")
    return done


def out(*args: str, cwd: Path | None = None) -> str:
    return git(*args, cwd=cwd).stdout.strip()


def project_url(env: Mapping[str, str]) -> str | None:
    """The project's HTTPS clone URL on its forge, from the CI variables of either forge."""
    if env.get(PUSH_URL_ENV):
        return env[PUSH_URL_ENV]
    if env.get("CI_SERVER_URL") and env.get("CI_PROJECT_PATH"):  # GitLab
        return f"{env['CI_SERVER_URL'].rstrip('/')}/{env['CI_PROJECT_PATH']}.git"
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):  # Forgejo Actions
        return f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}.git"
    return None


def push_target(env: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Where to push and the environment to push with (the token only in that environment)."""
    env = dict(os.environ if env is None else env)
    token = env.get(TOKEN_ENV, "")
    if not token:
        return env.get(PUSH_URL_ENV) or "origin", env
    url = project_url(env)
    if url is None:
        raise UserError(
            f"{TOKEN_ENV} is set but no project URL is known: set {PUSH_URL_ENV} "
            "(https://forge.example.org/group/project.git)"
        )
    user = env.get(TOKEN_USER_ENV) or "oauth2"
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env.update(
        {
            "GIT_CONFIG_COUNT": str(count + 1),
            f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
            f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    return url, env


def skip_ci_push_options(target: str, env: Mapping[str, str], cwd: Path | None = None) -> list[str]:
    """GitLab's ``ci.skip`` push option, on top of ``[skip ci]`` in the message (GitLab honours
    both; Forgejo only the message). Only towards a GitLab server over a network URL: a local
    bare repository, or a server that does not advertise push options, refuses the push."""
    if env.get("GITLAB_CI") != "true":
        return []
    url = target
    if "://" not in target and not target.startswith("/"):
        url = git("remote", "get-url", target, cwd=cwd, check=False).stdout.strip()
    return ["-o", "ci.skip"] if url.startswith(("https://", "http://", "ssh://")) else []
