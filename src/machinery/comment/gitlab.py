"""GitLab: merge-request notes and project uploads through python-gitlab."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from machinery.comment.base import (
    MAX_RETRIES,
    TRANSIENT,
    Posted,
    Render,
    backoff,
    converge,
    digest,
    retried,
    tagged,
    uploaded,
)
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
            if code in TRANSIENT:
                raise CommentError(
                    f"GitLab answered {code} {retried()}: {exc.error_message}"
                ) from None
            raise CommentError(f"GitLab answered {code}: {exc.error_message}") from None
        except requests.exceptions.RequestException as exc:
            reason = type(exc).__name__
            raise CommentError(
                f"cannot reach {self.pr.server_url} ({reason}, {retried()}): check CI_SERVER_URL"
            ) from None

    def publish(self, marker: str, images: list[Image], render: Render) -> Posted:
        auth = (
            {"job_token": self.token}
            if self.token_var == "CI_JOB_TOKEN"
            else {"private_token": self.token}
        )
        gl = _client(self.pr.server_url, auth)
        with self._errors():
            me = None
            if self.token_var != "CI_JOB_TOKEN":  # /user does not take a job token
                gl.auth()
                me = gl.user.username if gl.user else None
            project = gl.projects.get(self.pr.project, lazy=True)
            mr = project.mergerequests.get(self.pr.number, lazy=True)
            ours = self._ours(mr, marker, me)
            known = uploaded(ours[0].body) if ours else {}
            urls = {}
            for image in images:
                sha = digest(image)
                urls[image.path.name] = tagged(known.get(sha) or self._upload(project, image), sha)
            body = render(urls)
            if ours:
                note, action = ours[0], "updated"
                note.body = body
                note.save()
                self._delete(mr, [n.id for n in ours[1:]])
            else:
                note, action = mr.notes.create({"body": body}), "created"
                note = self._converge(mr, marker, me, note, body)
        return Posted(action, f"note {note.id} on merge request !{self.pr.number}")

    def _ours(self, mr: Any, marker: str, me: str | None) -> list[Any]:
        """Our marked notes, oldest first."""
        notes = [
            note
            for note in mr.notes.list(iterator=True, per_page=100, sort="asc")
            if (note.body or "").startswith(marker)  # a reply quoting it starts with "> "
            and not note.attributes.get("system")
            and (me is None or note.author.get("username") == me)
        ]
        return sorted(notes, key=lambda n: int(n.id))

    def _converge(self, mr: Any, marker: str, me: str | None, note: Any, body: str) -> Any:
        """After a create: another job of this MR may have created one too. Keep the oldest,
        with this run's body, and delete the rest."""
        found = {int(n.id): n for n in self._ours(mr, marker, me)}
        keep, extra = converge(list(found), int(note.id))
        self._delete(mr, extra)
        if keep == int(note.id):
            return note
        survivor = found[keep]
        survivor.body = body
        survivor.save()
        return survivor

    def _delete(self, mr: Any, ids: list[int]) -> None:
        import gitlab

        for note_id in ids:
            try:
                mr.notes.delete(note_id)
            except gitlab.GitlabDeleteError as exc:
                if exc.response_code != 404:  # 404: the other job deleted it first
                    raise

    def _upload(self, project: Any, image: Image) -> str:
        import gitlab
        import requests

        data = image.path.read_bytes()
        # Retried here, not by python-gitlab: its multipart body is a stream that a retry sends
        # again already read to its end, and the server then waits for the promised bytes.
        for attempt in range(MAX_RETRIES + 1):
            try:
                uploaded = project.upload(
                    image.path.name, filedata=data, retry_transient_errors=False
                )
                break
            except gitlab.GitlabUploadError as exc:
                if exc.response_code not in TRANSIENT or attempt == MAX_RETRIES:
                    raise
            except requests.ConnectionError:
                if attempt == MAX_RETRIES:
                    raise
            time.sleep(backoff(attempt))
        # full_path is absolute on the server (/-/project/<id>/uploads/<secret>/<name> since
        # GitLab 17.1): the link works wherever the Markdown is shown, unlike the project-relative
        # "url".
        return f"{self.pr.server_url}{uploaded['full_path']}"


def _client(url: str, auth: dict[str, str]) -> Any:
    import gitlab

    class Client(gitlab.Gitlab):
        """python-gitlab with its retries bounded: the constructor takes ``retry_transient_errors``
        but leaves ``max_retries`` at 10 (102 s of back-off) unless every call passes it."""

        def http_request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("max_retries", MAX_RETRIES)
            return super().http_request(*args, **kwargs)

    return Client(url, timeout=30, retry_transient_errors=True, **auth)  # type: ignore[arg-type]
