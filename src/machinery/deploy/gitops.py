"""Commit one edit to a branch of the forge and push it, rebasing and retrying on a race.

The edit happens in a throwaway worktree of the branch's current tip (fetched fresh), never in
the job's checkout: a main pipeline's checkout is the commit it built, which may be behind the
branch (another bump, a merge) by the time the job runs.
"""

from __future__ import annotations

import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from machinery.ci.git import GitError, git, out, push_target, skip_ci_push_options

SKIP_CI = "[skip ci]"  # GitLab and Forgejo (its default SKIP_WORKFLOW_STRINGS) both honour it
ATTEMPTS = 5
# Rejections that mean "the branch moved under us": worth a rebase and another try.
_RACE = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref", "stale info")

Edit = Callable[[Path], bool]  # edits the worktree; False when there is nothing to change
# ``message`` may be a callable: called after the edit, when what changed is known.


@dataclass(frozen=True)
class PushResult:
    commit: str | None  # None: nothing changed, nothing pushed
    attempts: int
    tip: str = ""  # the branch's tip afterwards: ``commit``, or the tip that already had the edit


def _identity(env: Mapping[str, str]) -> list[str]:
    name = env.get("GITLAB_USER_NAME") or env.get("GITHUB_ACTOR") or "mlops-ci"
    email = env.get("GITLAB_USER_EMAIL") or "mlops-ci@noreply.invalid"
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def commit_and_push(
    *,
    repo: Path,
    branch: str,
    paths: list[str],
    message: str | Callable[[], str],
    edit: Edit,
    env: Mapping[str, str],
    attempts: int = ATTEMPTS,
) -> PushResult:
    target, push_env = push_target(env)
    ref = f"refs/mlops/deploy/{secrets.token_hex(4)}"
    tmp = Path(tempfile.mkdtemp(prefix="mlops-deploy-"))
    work = tmp / "tree"

    def fetch() -> None:
        git(
            "fetch",
            "--quiet",
            "--no-tags",
            target,
            f"+refs/heads/{branch}:{ref}",
            cwd=repo,
            env=push_env,
        )

    def commit(work: Path) -> bool:
        """Stage and commit the edit; False when the tree already had it."""
        git("add", "--", *paths, cwd=work)
        if not git("diff", "--cached", "--quiet", cwd=work, check=False).returncode:
            return False
        text = message if isinstance(message, str) else message()
        git(*_identity(env), "commit", "--quiet", "-m", text, cwd=work)
        return True

    try:
        fetch()
        git("worktree", "add", "--quiet", "--detach", str(work), ref, cwd=repo)
        if not (edit(work) and commit(work)):
            return PushResult(None, 0, out("rev-parse", ref, cwd=repo))
        options = skip_ci_push_options(target, push_env, repo)
        for attempt in range(1, attempts + 1):
            done = git(
                "push",
                "--porcelain",
                *options,
                target,
                f"HEAD:refs/heads/{branch}",
                cwd=work,
                env=push_env,
                check=False,
            )
            if done.returncode == 0:
                head = out("rev-parse", "HEAD", cwd=work)
                return PushResult(head, attempt, head)
            text = done.stdout + done.stderr
            if not any(marker in text for marker in _RACE) or attempt == attempts:
                last = text.strip().splitlines()[-1:] or ["(no output)"]
                raise GitError(f"push to {branch} failed after {attempt} attempt(s): {last[0]}")
            time.sleep(random.uniform(0.1, 0.5) * attempt)
            fetch()
            if git("rebase", "--quiet", ref, cwd=work, check=False).returncode == 0:
                tip = out("rev-parse", ref, cwd=repo)
                if out("rev-parse", "HEAD", cwd=work) == tip:
                    return PushResult(None, attempt, tip)  # upstream already has this change
                continue
            # Someone else changed the same lines: apply the edit again on their tip.
            git("rebase", "--abort", cwd=work, check=False)
            git("reset", "--quiet", "--hard", ref, cwd=work)
            if not (edit(work) and commit(work)):
                return PushResult(None, attempt, out("rev-parse", ref, cwd=repo))
        raise GitError(f"push to {branch} failed after {attempts} attempts")
    finally:
        git("worktree", "remove", "--force", str(work), cwd=repo, check=False)
        git("update-ref", "-d", ref, cwd=repo, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def move_tag(*, repo: Path, tag: str, commit: str, env: Mapping[str, str]) -> bool:
    """Point ``tag`` on the forge at ``commit`` (create or move it); ``False`` if it already
    does. A moving tag is how Argo CD's tag tracking redeploys (docs/deploy.md, "Promotion")."""
    target, push_env = push_target(env)
    remote = git(
        "ls-remote", "--tags", target, f"refs/tags/{tag}", cwd=repo, env=push_env, check=False
    )
    if remote.returncode == 0 and remote.stdout.split()[:1] == [commit]:
        return False
    options = skip_ci_push_options(target, push_env, repo)
    done = git(
        "push",
        "--porcelain",
        "--force",
        *options,
        target,
        f"{commit}:refs/tags/{tag}",
        cwd=repo,
        env=push_env,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise GitError(f"moving tag {tag} to {commit[:12]} failed: {last[0]}")
    return True
