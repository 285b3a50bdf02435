"""Forgejo: issue comments and comment attachments through its REST API (``/api/v1``).

httpx rather than pyforgejo: six plain calls, httpx is already a dependency and its multipart
upload is well trodden; pyforgejo is a generated client with few users.
"""

from __future__ import annotations

import time
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


class ForgejoBackend:
    def __init__(self, pr: PullRequest, token: str) -> None:
        self.pr = pr
        self.token = token
        self.repo = f"/repos/{pr.project}"

    def _request(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        """One call, retried on a transient answer (base.MAX_RETRIES, python-gitlab's back-off)."""
        import httpx

        for attempt in range(MAX_RETRIES + 1):
            last = attempt == MAX_RETRIES
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise CommentError(
                        f"cannot reach {self.pr.server_url} ({type(exc).__name__},"
                        f" {retried()}): check GITHUB_SERVER_URL / FORGEJO_SERVER_URL"
                    ) from None
            else:
                if response.status_code not in TRANSIENT or last:
                    return response
            time.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _call(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(client, method, path, **kwargs)
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
        again = f" {retried()}" if code in TRANSIENT else ""
        raise CommentError(f"Forgejo answered {code}{again} on {method} {path}: {message}")

    def publish(self, marker: str, images: list[Image], render: Render) -> Posted:
        import httpx

        with httpx.Client(
            base_url=f"{self.pr.server_url}/api/v1",
            headers={"Authorization": f"token {self.token}", "Accept": "application/json"},
            timeout=30,
        ) as client:
            ours = self._ours(client, marker)
            if ours:
                comment, action = ours[0], "updated"
                self._delete(client, [c["id"] for c in ours[1:]])
            else:
                # The plots are attached to the comment itself, so it must exist first.
                created = self._call(
                    client,
                    "POST",
                    f"{self.repo}/issues/{self.pr.number}/comments",
                    json={"body": render({})},
                )
                comment = self._converge(client, marker, created)
                action = "created" if comment["id"] == created["id"] else "updated"
            cid = comment["id"]
            assets = {a["browser_download_url"]: a for a in comment.get("assets") or []}
            known = {sha: url for sha, url in uploaded(comment["body"]).items() if url in assets}
            urls, kept = {}, set()
            for image in images:
                sha = digest(image)
                if sha in known:
                    kept.add(known[sha])
                url = known.get(sha) or self._attach(client, cid, image)
                urls[image.path.name] = tagged(url, sha)
            if action == "updated" or urls:
                comment = self._call(
                    client,
                    "PATCH",
                    f"{self.repo}/issues/comments/{cid}",
                    json={"body": render(urls)},
                )
            # Last push's plots go once the comment no longer links them; reused ones stay.
            for url, old in assets.items():
                if url not in kept:
                    self._ignore_gone(
                        client, f"{self.repo}/issues/comments/{cid}/assets/{old['id']}"
                    )
        return Posted(action, str(comment.get("html_url") or f"comment {cid}"))

    def _ours(self, client: Any, marker: str) -> list[dict[str, Any]]:
        """Our marked comments, oldest first. Ours start with the marker; a reply quoting it has
        "> " in front. (No GET /user to learn our login: that needs scope read:user, which a
        comment token should not.)"""
        comments = self._call(client, "GET", f"{self.repo}/issues/{self.pr.number}/comments")
        ours = [c for c in comments if (c.get("body") or "").startswith(marker)]
        return sorted(ours, key=lambda c: int(c["id"]))

    def _converge(self, client: Any, marker: str, created: dict[str, Any]) -> dict[str, Any]:
        """After a create: another job of this PR may have created one too. Keep the oldest,
        delete the rest (before any plot is attached, so nothing is attached twice)."""
        found = {int(c["id"]): c for c in self._ours(client, marker)}
        keep, extra = converge(list(found), int(created["id"]))
        self._delete(client, extra)
        return found.get(keep, created)

    def _delete(self, client: Any, ids: list[int]) -> None:
        for cid in ids:
            self._ignore_gone(client, f"{self.repo}/issues/comments/{cid}")

    def _ignore_gone(self, client: Any, path: str) -> None:
        try:
            self._call(client, "DELETE", path)
        except CommentError:
            pass  # already gone (the other job was first), or not ours to delete

    def _attach(self, client: Any, cid: int, image: Image) -> str:
        attachment = self._call(
            client,
            "POST",
            f"{self.repo}/issues/comments/{cid}/assets",
            params={"name": image.path.name},
            files={"attachment": (image.path.name, image.path.read_bytes(), "image/png")},
        )
        return str(attachment["browser_download_url"])
