"""Forgejo: issue comments and comment attachments through its REST API (``/api/v1``).

httpx rather than pyforgejo: six plain calls, httpx is already a dependency and its multipart
upload is well trodden; pyforgejo is a generated client with few users.
"""

from __future__ import annotations

from typing import Any

from machinery.comment.base import Posted, Render
from machinery.comment.context import TOKEN_HELP, TOKEN_VAR, CommentError, PullRequest
from machinery.report.inputs import Image


class ForgejoBackend:
    def __init__(self, pr: PullRequest, token: str) -> None:
        self.pr = pr
        self.token = token

    def _call(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CommentError(
                f"cannot reach {self.pr.server_url} ({type(exc).__name__}): check"
                " GITHUB_SERVER_URL / FORGEJO_SERVER_URL"
            ) from None
        if response.status_code < 400:
            return response.json() if response.content else None
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:200]
        code = response.status_code
        if code == 401:
            raise CommentError(
                f"the token in {TOKEN_VAR} was rejected (401: {message}): set it to"
                f" {TOKEN_HELP['forgejo']}"
            )
        if code == 403:
            raise CommentError(
                f"the token in {TOKEN_VAR} may not write comments on {self.pr.project}"
                f" #{self.pr.number} (403: {message}): it needs to be {TOKEN_HELP['forgejo']}"
            )
        if code == 404:
            raise CommentError(
                f"Forgejo repository {self.pr.project} or pull request #{self.pr.number} not found"
                f" (404): check GITHUB_REPOSITORY, the event's PR number and that {TOKEN_VAR}'s"
                " user can see the repository"
            )
        raise CommentError(f"Forgejo answered {code} on {method} {path}: {message}")

    def publish(self, marker: str, images: list[Image], render: Render) -> Posted:
        import httpx

        repo = f"/repos/{self.pr.project}"
        with httpx.Client(
            base_url=f"{self.pr.server_url}/api/v1",
            headers={"Authorization": f"token {self.token}", "Accept": "application/json"},
            timeout=30,
        ) as client:
            # Ours starts with the marker; a reply quoting it has "> " in front. (No GET /user to
            # learn our login: that needs scope read:user, which a comment token should not.)
            comments = self._call(client, "GET", f"{repo}/issues/{self.pr.number}/comments")
            ours = [c for c in comments if (c.get("body") or "").startswith(marker)]
            if ours:
                comment, action = min(ours, key=lambda c: int(c["id"])), "updated"
            else:
                # The plots are attached to the comment itself, so it must exist first.
                comment = self._call(
                    client,
                    "POST",
                    f"{repo}/issues/{self.pr.number}/comments",
                    json={"body": render({})},
                )
                action = "created"
            cid = comment["id"]
            stale = list(comment.get("assets") or [])
            urls = {}
            for image in images:
                attachment = self._call(
                    client,
                    "POST",
                    f"{repo}/issues/comments/{cid}/assets",
                    params={"name": image.path.name},
                    files={"attachment": (image.path.name, image.path.read_bytes(), "image/png")},
                )
                urls[image.path.name] = attachment["browser_download_url"]
            if action == "updated" or urls:
                comment = self._call(
                    client, "PATCH", f"{repo}/issues/comments/{cid}", json={"body": render(urls)}
                )
            # Last push's plots go once the comment no longer links them.
            for old in stale:
                path = f"{repo}/issues/comments/{cid}/assets/{old['id']}"
                try:
                    self._call(client, "DELETE", path)
                except CommentError:
                    pass  # already gone, or not ours to delete: the new body no longer links it
        return Posted(action, str(comment.get("html_url") or f"comment {cid}"))
