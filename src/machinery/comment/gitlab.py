"""GitLab: merge-request notes and project uploads through python-gitlab."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from machinery.comment.base import Posted, Render
from machinery.comment.context import TOKEN_HELP, TOKEN_VAR, CommentError, PullRequest
from machinery.report.inputs import Image


class GitLabBackend:
    def __init__(self, pr: PullRequest, token: str, token_var: str) -> None:
        self.pr = pr
        self.token = token
        self.token_var = token_var

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """python-gitlab's and requests' exceptions as one line naming the variable to set."""
        import gitlab
        import requests

        where = f"project {self.pr.project}, merge request !{self.pr.number}"
        try:
            yield
        except gitlab.GitlabError as exc:
            code = exc.response_code
            if self.token_var == "CI_JOB_TOKEN" and code in (401, 403):
                raise CommentError(
                    f"GitLab refused CI_JOB_TOKEN for merge-request notes ({code}): set"
                    f" {TOKEN_VAR} to {TOKEN_HELP['gitlab']}"
                ) from None
            if code == 401:
                raise CommentError(
                    f"the token in {TOKEN_VAR} was rejected (401 Unauthorized): set it to"
                    f" {TOKEN_HELP['gitlab']}"
                ) from None
            if code == 403:
                raise CommentError(
                    f"the token in {TOKEN_VAR} may not write notes on {where} (403 Forbidden):"
                    f" it needs to be {TOKEN_HELP['gitlab']}"
                ) from None
            if code == 404:
                raise CommentError(
                    f"GitLab {where} not found (404): check CI_PROJECT_ID / CI_MERGE_REQUEST_IID"
                    f" and that {TOKEN_VAR}'s user can see the project"
                ) from None
            raise CommentError(f"GitLab answered {code}: {exc.error_message}") from None
        except requests.exceptions.RequestException as exc:
            reason = type(exc).__name__
            raise CommentError(
                f"cannot reach {self.pr.server_url} ({reason}): check CI_SERVER_URL"
            ) from None

    def publish(self, marker: str, images: list[Image], render: Render) -> Posted:
        import gitlab

        auth = (
            {"job_token": self.token}
            if self.token_var == "CI_JOB_TOKEN"
            else {"private_token": self.token}
        )
        gl = gitlab.Gitlab(self.pr.server_url, timeout=30, **auth)  # type: ignore[arg-type]
        with self._errors():
            me = None
            if self.token_var != "CI_JOB_TOKEN":  # /user does not take a job token
                gl.auth()
                me = gl.user.username if gl.user else None
            project = gl.projects.get(self.pr.project, lazy=True)
            mr = project.mergerequests.get(self.pr.number, lazy=True)
            ours = [
                note
                for note in mr.notes.list(iterator=True, per_page=100, sort="asc")
                if (note.body or "").startswith(marker)  # a reply quoting it starts with "> "
                and not note.attributes.get("system")
                and (me is None or note.author.get("username") == me)
            ]
            urls = {image.path.name: self._upload(project, image) for image in images}
            body = render(urls)
            if ours:
                note = min(ours, key=lambda n: int(n.id))
                note.body = body
                note.save()
                action = "updated"
            else:
                note = mr.notes.create({"body": body})
                action = "created"
        return Posted(action, f"note {note.id} on merge request !{self.pr.number}")

    def _upload(self, project: Any, image: Image) -> str:
        uploaded = project.upload(image.path.name, filepath=str(image.path))
        # full_path is absolute on the server (/-/project/<id>/uploads/<secret>/<name> since
        # GitLab 17.1): the link works wherever the Markdown is shown, unlike the project-relative
        # "url".
        return f"{self.pr.server_url}{uploaded['full_path']}"
