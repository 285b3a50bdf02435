"""A local forge for the comment and CI tests: the GitLab v4 and Forgejo v1 endpoints that
``mlops comment`` calls, shaped after the published API docs, on 127.0.0.1 only.

Shapes followed (status codes, JSON fields, headers):
- GitLab notes API (docs.gitlab.com/api/notes): ``GET/POST /projects/:id/merge_requests/:iid/notes``
  (paginated: ``page``/``per_page`` ≤ 100, ``X-Page``/``X-Next-Page``/``X-Total``/``X-Total-Pages``
  and a ``Link`` header, which python-gitlab follows), ``PUT …/notes/:note_id``; markdown uploads
  (docs.gitlab.com/api/project_markdown_uploads): ``POST /projects/:id/uploads`` (multipart field
  ``file``) answering ``{id, alt, url, full_path, markdown}``; ``GET /user``.
  Tokens: ``PRIVATE-TOKEN`` (or ``Authorization: Bearer``) with scopes (``api`` writes,
  ``read_api`` only reads: a write answers 403 ``insufficient_scope``); ``JOB-TOKEN`` (CI_JOB_TOKEN)
  cannot use the notes or uploads API: 403. Unknown token 401; unknown project or MR 404.
- Forgejo API (``/api/v1``, swagger): ``GET/POST /repos/{owner}/{repo}/issues/{index}/comments``
  (not paginated), ``PATCH /repos/{owner}/{repo}/issues/comments/{id}``, comment attachments
  ``GET/POST /repos/{owner}/{repo}/issues/comments/{id}/assets`` (multipart field ``attachment``,
  optional ``name`` query) and ``DELETE …/assets/{attachment_id}``, issue attachments
  ``POST /repos/{owner}/{repo}/issues/{index}/assets``, ``GET /repos/{owner}/{repo}/pulls/{index}``,
  ``GET /user``. ``Authorization: token …``; a token without ``write:issue`` gets 403 on writes;
  only a comment's author may edit it (403). Attachments are served at ``/attachments/{uuid}``.

Every request is recorded (method, path, query, the auth header kind, JSON body or multipart parts
with sizes and sha256) and readable at ``GET /_forge/requests``; ``GET /_forge/state`` shows the
notes/comments and uploads; ``POST /_forge/seed`` adds other users' comments (pagination);
``POST /_forge/fail`` makes the next N matching requests answer a given status (a proxy's 502 or
503: nothing changes on the forge); ``POST /_forge/barrier`` holds the next N matching requests
until all N arrived (two CI jobs reading the same state at once). Deleting a note or comment
(``DELETE …/notes/:note_id``; Forgejo ``DELETE /repos/{owner}/{repo}/issues/comments/{id}``,
which drops its attachments) is its author's right only (403 otherwise).

Run by the fixture as ``python tests/support/forge_server.py --port P --state DIR``; stdlib only
(plus the stdlib email parser for multipart), so it starts in ~0.1 s in any venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

# Defaults the fixture and tests share (a test may override them with --config).
GITLAB_PROJECT_ID = 7
GITLAB_PROJECT_PATH = "group/project"
GITLAB_MR_IID = 42
GITLAB_TOKEN = "glpat-write-token-0001"  # scope api: may write notes
GITLAB_READ_TOKEN = "glpat-read-token-0002"  # scope read_api: reads only
GITLAB_JOB_TOKEN = "glcbt-job-token-0003"  # what CI_JOB_TOKEN holds: no notes API at all
FORGEJO_REPO = "owner/project"
FORGEJO_PR = 5
FORGEJO_TOKEN = "fj-write-token-0001"  # write:issue
FORGEJO_READ_TOKEN = "fj-read-token-0002"  # read:issue only
GITLAB_TRIGGER_TOKEN = "glptt-trigger-token-0004"  # a pipeline trigger token (retraining)
FORGEJO_WORKFLOWS = ["ci.yml", "promote.yml", "retrain.yml"]  # dispatchable by file name
TARGET_BRANCH = "main"

DEFAULT_CONFIG: dict[str, Any] = {
    "gitlab": {
        "projects": {
            str(GITLAB_PROJECT_ID): {
                "path": GITLAB_PROJECT_PATH,
                "merge_requests": {str(GITLAB_MR_IID): {"target_branch": TARGET_BRANCH}},
            }
        },
        "tokens": {
            GITLAB_TOKEN: {"user": "ci-bot", "scopes": ["api"]},
            GITLAB_READ_TOKEN: {"user": "reader", "scopes": ["read_api"]},
        },
        "job_tokens": [GITLAB_JOB_TOKEN],
        "trigger_tokens": [GITLAB_TRIGGER_TOKEN],
    },
    "forgejo": {
        "repos": {
            FORGEJO_REPO: {
                "pulls": {str(FORGEJO_PR): {"base": TARGET_BRANCH}},
                "workflows": FORGEJO_WORKFLOWS,
            }
        },
        "tokens": {
            FORGEJO_TOKEN: {"user": "ci-bot", "scopes": ["write:issue", "write:repository"]},
            FORGEJO_READ_TOKEN: {"user": "reader", "scopes": ["read:issue"]},
        },
    },
}

_REDACT = ("private-token", "job-token", "authorization")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class State:
    """Everything the forge holds; one lock, because ThreadingHTTPServer serves in threads."""

    def __init__(self, config: dict[str, Any], state_dir: Path) -> None:
        self.config = config
        self.dir = state_dir
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.next_id = 1000
        self.gitlab_notes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.gitlab_uploads: dict[str, bytes] = {}  # "/-/project/7/uploads/<secret>/<name>"
        self.forgejo_comments: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.forgejo_attachments: dict[str, tuple[int, bytes]] = {}  # uuid -> (comment, bytes)
        self.faults: list[dict[str, Any]] = []
        self.barriers: list[dict[str, Any]] = []
        self.triggers: list[dict[str, Any]] = []  # GitLab trigger pipelines, Forgejo dispatches

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def record(self, entry: dict[str, Any]) -> None:
        self.requests.append(entry)
        with (self.dir / "requests.jsonl").open("a") as fh:
            fh.write(json.dumps(entry) + "\n")


def _parse_multipart(content_type: str, body: bytes) -> list[dict[str, Any]]:
    msg = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise HTTPError(400, {"message": "400 Bad request - expected multipart/form-data"})
    parts = []
    for part in msg.iter_parts():
        data = part.get_payload(decode=True) or b""
        parts.append(
            {
                "field": part.get_param("name", header="content-disposition"),
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "data": data,
            }
        )
    return parts


class Handler(BaseHTTPRequestHandler):
    server: ForgeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _handle(self) -> None:
        state = self.server.state
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        entry: dict[str, Any] = {
            "method": self.command,
            "path": path,
            "raw_path": split.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()},
            "auth": self._auth_kind(),
            "content_type": ctype.split(";")[0],
        }
        headers: dict[str, str] = {}
        status, payload = 500, b""
        try:
            form: list[dict[str, Any]] = []
            body: Any = None
            if ctype.startswith("multipart/form-data"):
                form = _parse_multipart(ctype, raw)
                entry["form"] = [
                    {
                        "field": p["field"],
                        "filename": p["filename"],
                        "content_type": p["content_type"],
                        "size": len(p["data"]),
                        "sha256": hashlib.sha256(p["data"]).hexdigest(),
                    }
                    for p in form
                ]
            elif raw:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                entry["json"] = body
            if not path.startswith("/_forge/"):
                self._barrier(path)
            with state.lock:
                fault = self._fault(path)
                if fault is not None:
                    raise HTTPError(fault, {"message": f"{fault} injected by the test"})
                status, headers, payload = self._route(path, query, body, form)
        except HTTPError as err:
            status, payload = err.status, json.dumps(err.body).encode()
            headers = {"Content-Type": "application/json"}
        entry["status"] = status
        if not path.startswith("/_forge/"):
            with state.lock:
                state.record(entry)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def _auth_kind(self) -> str | None:
        for name in _REDACT:
            value = self.headers.get(name)
            if value:
                scheme = value.split(" ", 1)[0].lower() if name == "authorization" else ""
                return f"{name}:{scheme}" if scheme else name
        return None

    def _fault(self, path: str) -> int | None:
        for fault in self.server.state.faults:
            if self._matches(fault, path) and fault["times"] > 0:
                fault["times"] -= 1
                return int(fault["status"])
        return None

    def _matches(self, rule: dict[str, Any], path: str) -> bool:
        method = rule.get("method") or self.command
        return bool(method == self.command and rule.get("path_contains", "") in path)

    def _barrier(self, path: str) -> None:
        """Hold a matching request until ``parties`` of them have arrived (or ``timeout``
        passed): two jobs then both read the same state before either writes."""
        state = self.server.state
        with state.lock:
            barrier = next(
                (b for b in state.barriers if b["left"] > 0 and self._matches(b, path)), None
            )
            if barrier is None:
                return
            barrier["left"] -= 1
        try:
            barrier["barrier"].wait(timeout=barrier["timeout"])
        except threading.BrokenBarrierError:
            pass  # the other party never came: answer anyway, the test will see it

    def _json(self, status: int, data: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode()

    def _route(
        self, path: str, query: dict[str, list[str]], body: Any, form: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/_forge/"):
            return self._admin(path, body)
        answered = token_endpoints(self, path)
        if answered is None:
            answered = trigger_endpoints(self, path, body)
        if answered is not None:
            return answered
        if path.startswith("/api/v4/"):
            return self._gitlab(path[len("/api/v4") :], query, body, form)
        if path.startswith("/api/v1/"):
            return self._forgejo(path[len("/api/v1") :], query, body, form)
        return self._files(path)

    # -- test control -----------------------------------------------------------------------
    def _admin(self, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        if path == "/_forge/requests":
            return self._json(200, state.requests)
        if path == "/_forge/state":
            return self._json(
                200,
                {
                    "gitlab_notes": {f"{p}!{m}": n for (p, m), n in state.gitlab_notes.items()},
                    "gitlab_uploads": sorted(state.gitlab_uploads),
                    "forgejo_comments": {
                        f"{r}#{i}": c for (r, i), c in state.forgejo_comments.items()
                    },
                    "forgejo_attachments": sorted(state.forgejo_attachments),
                    "triggers": state.triggers,
                },
            )
        if path == "/_forge/seed" and self.command == "POST":
            for n in range(int(body.get("count", 1))):
                text = str(body.get("body", "a comment from a reviewer {n}")).format(n=n)
                user = str(body.get("user", "reviewer"))
                if body["forge"] == "gitlab":
                    self._gitlab_add_note(str(body["project"]), str(body["mr"]), text, user)
                else:
                    self._forgejo_add_comment(str(body["repo"]), str(body["index"]), text, user)
            return self._json(200, {"seeded": int(body.get("count", 1))})
        if path == "/_forge/fail" and self.command == "POST":
            state.faults.append(
                {
                    "status": int(body["status"]),
                    "times": int(body.get("times", 1)),
                    "path_contains": body.get("path_contains", ""),
                    "method": body.get("method"),
                }
            )
            return self._json(200, {"faults": state.faults})
        if path == "/_forge/barrier" and self.command == "POST":
            parties = int(body.get("parties", 2))
            state.barriers.append(
                {
                    "barrier": threading.Barrier(parties),
                    "left": parties,
                    "timeout": float(body.get("timeout", 30)),
                    "path_contains": body.get("path_contains", ""),
                    "method": body.get("method"),
                }
            )
            return self._json(200, {"barriers": len(state.barriers)})
        raise HTTPError(404, {"message": "no such control endpoint"})

    # -- GitLab v4 --------------------------------------------------------------------------
    def _gitlab_token(self) -> tuple[str, dict[str, Any]]:
        """("private", token info) or ("job", {}); 401 for none or an unknown token."""
        cfg = self.server.state.config["gitlab"]
        job = self.headers.get("JOB-TOKEN")
        if job:
            if job in cfg.get("job_tokens", []):
                return "job", {}
            raise HTTPError(401, {"message": "401 Unauthorized"})
        token = self.headers.get("PRIVATE-TOKEN")
        auth = self.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth.split(" ", 1)[1]
        if not token:
            raise HTTPError(401, {"message": "401 Unauthorized"})
        info = cfg["tokens"].get(token)
        if info is None:
            raise HTTPError(401, {"message": "401 Unauthorized"})
        return "private", info

    def _gitlab_user(self, name: str) -> dict[str, Any]:
        uid = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
        return {"id": uid, "username": name, "name": name.title(), "state": "active"}

    def _gitlab_project(self, pid: str) -> tuple[str, dict[str, Any]]:
        projects = self.server.state.config["gitlab"]["projects"]
        for key, project in projects.items():
            if pid in (key, project["path"]):
                return key, project
        raise HTTPError(404, {"message": "404 Project Not Found"})

    def _gitlab_add_note(self, pid: str, iid: str, body: str, user: str) -> dict[str, Any]:
        state = self.server.state
        note = {
            "id": state.new_id(),
            "type": None,
            "body": body,
            "attachment": None,
            "author": self._gitlab_user(user),
            "created_at": _now(),
            "updated_at": _now(),
            "system": False,
            "noteable_id": int(pid) * 1000 + int(iid),
            "noteable_type": "MergeRequest",
            "project_id": int(pid),
            "noteable_iid": int(iid),
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        state.gitlab_notes.setdefault((pid, iid), []).append(note)
        return note

    def _gitlab(
        self, path: str, query: dict[str, list[str]], body: Any, form: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        kind, token = self._gitlab_token()
        if path == "/user":
            if kind == "job":  # /user does not take a job token
                raise HTTPError(401, {"message": "401 Unauthorized"})
            return self._json(200, self._gitlab_user(token["user"]))
        m = re.fullmatch(r"/projects/([^/]+)(/.*)?", path)
        if not m:
            raise HTTPError(404, {"error": "404 Not Found"})
        pid, project = self._gitlab_project(m.group(1))
        rest = m.group(2) or ""
        base = f"http://{self.headers.get('Host')}"
        if rest == "":
            return self._json(
                200,
                {
                    "id": int(pid),
                    "path_with_namespace": project["path"],
                    "web_url": f"{base}/{project['path']}",
                    "default_branch": TARGET_BRANCH,
                },
            )
        writes = self.command in ("POST", "PUT", "DELETE")
        if kind == "job":
            # CI_JOB_TOKEN reaches only a short allow-list of endpoints; notes and uploads are
            # not on it.
            raise HTTPError(403, {"message": "403 Forbidden"})
        if writes and "api" not in token["scopes"]:
            raise HTTPError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than provided"
                    " by the access token.",
                    "scope": "api",
                },
            )
        if rest == "/uploads" and self.command == "POST":
            files = [p for p in form if p["field"] == "file" and p["filename"]]
            if not files:
                raise HTTPError(400, {"error": "file is missing"})
            name = Path(files[0]["filename"]).name
            secret = secrets.token_hex(16)
            full_path = f"/-/project/{pid}/uploads/{secret}/{quote(name)}"
            self.server.state.gitlab_uploads[full_path] = files[0]["data"]
            self.server.state.gitlab_uploads[f"/{project['path']}/uploads/{secret}/{name}"] = files[
                0
            ]["data"]
            url = f"/uploads/{secret}/{quote(name)}"
            return self._json(
                201,
                {
                    "id": self.server.state.new_id(),
                    "alt": Path(name).stem,
                    "url": url,
                    "full_path": full_path,
                    "markdown": f"![{Path(name).stem}]({url})",
                },
            )
        m = re.fullmatch(r"/merge_requests/(\d+)(/notes(?:/(\d+))?)?", rest)
        if not m:
            raise HTTPError(404, {"error": "404 Not Found"})
        iid = m.group(1)
        mr = project["merge_requests"].get(iid)
        if mr is None:
            raise HTTPError(404, {"message": "404 Not found"})
        if m.group(2) is None:
            return self._json(
                200,
                {"iid": int(iid), "project_id": int(pid), "target_branch": mr["target_branch"]},
            )
        notes = self.server.state.gitlab_notes.setdefault((pid, iid), [])
        note_id = m.group(3)
        if note_id is None and self.command == "GET":
            return self._gitlab_page(notes, query)
        if note_id is None and self.command == "POST":
            text = (body or {}).get("body")
            if not text:
                raise HTTPError(400, {"message": {"body": ["can't be blank"]}})
            return self._json(201, self._gitlab_add_note(pid, iid, text, token["user"]))
        note = next((n for n in notes if str(n["id"]) == note_id), None)
        if note is None:
            raise HTTPError(404, {"message": "404 Note Not Found"})
        if self.command == "GET":
            return self._json(200, note)
        if self.command == "PUT":
            if note["author"]["username"] != token["user"]:
                raise HTTPError(403, {"message": "403 Forbidden"})
            note["body"] = (body or {}).get("body", note["body"])
            note["updated_at"] = _now()
            return self._json(200, note)
        if self.command == "DELETE":
            if note["author"]["username"] != token["user"]:
                raise HTTPError(403, {"message": "403 Forbidden"})
            notes.remove(note)
            return 204, {}, b""
        raise HTTPError(405, {"message": "405 Method Not Allowed"})

    def _gitlab_page(
        self, notes: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], bytes]:
        """Offset pagination as GitLab does it (default 20 a page, at most 100)."""
        page = max(1, int(query.get("page", ["1"])[0]))
        per_page = min(100, max(1, int(query.get("per_page", ["20"])[0])))
        ordered = sorted(
            notes,
            key=lambda n: (n[query.get("order_by", ["created_at"])[0]], n["id"]),
            reverse=query.get("sort", ["desc"])[0] == "desc",
        )
        total_pages = max(1, -(-len(ordered) // per_page))
        chunk = ordered[(page - 1) * per_page : page * per_page]
        split = urlsplit(self.path)
        base = f"http://{self.headers.get('Host')}{split.path}"

        def link(p: int) -> str:
            q = {k: v[0] for k, v in query.items()}
            q.update(page=str(p), per_page=str(per_page))
            return f"{base}?{urlencode(q)}"

        links = [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
        if page < total_pages:
            links.insert(0, f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            links.insert(0, f'<{link(page - 1)}>; rel="prev"')
        return self._json(
            200,
            chunk,
            **{
                "X-Page": str(page),
                "X-Per-Page": str(per_page),
                "X-Total": str(len(ordered)),
                "X-Total-Pages": str(total_pages),
                "X-Next-Page": str(page + 1) if page < total_pages else "",
                "X-Prev-Page": str(page - 1) if page > 1 else "",
                "Link": ", ".join(links),
            },
        )

    # -- Forgejo v1 -------------------------------------------------------------------------
    def _forgejo_token(self, write: bool) -> dict[str, Any]:
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            raise HTTPError(401, {"message": "token is required", "url": self._docs_url()})
        info = self.server.state.config["forgejo"]["tokens"].get(token)
        if info is None:
            raise HTTPError(401, {"message": "user does not exist", "url": self._docs_url()})
        if write and "write:issue" not in info["scopes"]:
            raise HTTPError(
                403,
                {
                    "message": "token does not have at least one of required scope(s):"
                    " [write:issue]",
                    "url": self._docs_url(),
                },
            )
        return dict(info)

    def _docs_url(self) -> str:
        return f"http://{self.headers.get('Host')}/api/swagger"

    def _not_found(self) -> HTTPError:
        return HTTPError(
            404,
            {"message": "The target couldn't be found.", "url": self._docs_url(), "errors": []},
        )

    def _forgejo_user(self, name: str) -> dict[str, Any]:
        uid = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
        return {"id": uid, "login": name, "username": name, "full_name": name.title()}

    def _forgejo_add_comment(self, repo: str, index: str, body: str, user: str) -> dict[str, Any]:
        state = self.server.state
        cid = state.new_id()
        base = f"http://{self.headers.get('Host')}"
        comment = {
            "id": cid,
            "html_url": f"{base}/{repo}/pulls/{index}#issuecomment-{cid}",
            "pull_request_url": f"{base}/{repo}/pulls/{index}",
            "issue_url": "",
            "user": self._forgejo_user(user),
            "original_author": "",
            "original_author_id": 0,
            "body": body,
            "assets": [],
            "created_at": _now(),
            "updated_at": _now(),
        }
        state.forgejo_comments.setdefault((repo, index), []).append(comment)
        return comment

    def _forgejo_find_comment(self, repo: str, cid: str) -> dict[str, Any]:
        for (r, _), comments in self.server.state.forgejo_comments.items():
            for comment in comments:
                if r == repo and str(comment["id"]) == cid:
                    return comment
        raise self._not_found()

    def _forgejo_attach(
        self, query: dict[str, list[str]], form: list[dict[str, Any]], owner_id: int
    ) -> dict[str, Any]:
        files = [p for p in form if p["field"] == "attachment" and p["filename"]]
        if not files:
            raise HTTPError(422, {"message": "attachment is required", "url": self._docs_url()})
        name = query.get("name", [Path(files[0]["filename"]).name])[0]
        if not name.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")):
            raise HTTPError(422, {"message": "This file extension or type is not allowed."})
        uuid = secrets.token_hex(16)
        uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        self.server.state.forgejo_attachments[uuid] = (owner_id, files[0]["data"])
        return {
            "id": self.server.state.new_id(),
            "name": name,
            "size": len(files[0]["data"]),
            "download_count": 0,
            "created_at": _now(),
            "uuid": uuid,
            "browser_download_url": f"http://{self.headers.get('Host')}/attachments/{uuid}",
            "type": "attachment",
        }

    def _forgejo(
        self, path: str, query: dict[str, list[str]], body: Any, form: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        write = self.command in ("POST", "PATCH", "PUT", "DELETE")
        token = self._forgejo_token(write)
        if path == "/user":
            return self._json(200, self._forgejo_user(token["user"]))
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m or m.group(1) not in self.server.state.config["forgejo"]["repos"]:
            raise self._not_found()
        repo, rest = m.group(1), m.group(2) or ""
        pulls = self.server.state.config["forgejo"]["repos"][repo]["pulls"]
        base = f"http://{self.headers.get('Host')}"
        if rest == "":
            return self._json(200, {"full_name": repo, "html_url": f"{base}/{repo}"})
        m = re.fullmatch(r"/pulls/(\d+)", rest)
        if m:
            pull = pulls.get(m.group(1))
            if pull is None:
                raise self._not_found()
            return self._json(
                200,
                {"number": int(m.group(1)), "base": {"ref": pull["base"]}, "state": "open"},
            )
        m = re.fullmatch(r"/issues/(\d+)/(comments|assets)", rest)
        if m:
            index = m.group(1)
            if index not in pulls:
                raise self._not_found()
            if m.group(2) == "assets" and self.command == "POST":
                return self._json(201, self._forgejo_attach(query, form, -int(index)))
            comments = self.server.state.forgejo_comments.setdefault((repo, index), [])
            if self.command == "GET" and m.group(2) == "comments":
                return self._json(200, comments)
            if self.command == "POST" and m.group(2) == "comments":
                text = (body or {}).get("body")
                if not text:
                    raise HTTPError(422, {"message": "body is required", "url": self._docs_url()})
                return self._json(201, self._forgejo_add_comment(repo, index, text, token["user"]))
            raise HTTPError(405, {"message": "method not allowed"})
        m = re.fullmatch(r"/issues/comments/(\d+)(/assets(?:/(\d+))?)?", rest)
        if not m:
            raise self._not_found()
        comment = self._forgejo_find_comment(repo, m.group(1))
        if write and comment["user"]["login"] != token["user"]:
            raise HTTPError(403, {"message": "user should be the poster", "url": self._docs_url()})
        if m.group(2) is None:
            if self.command == "GET":
                return self._json(200, comment)
            if self.command == "PATCH":
                comment["body"] = (body or {}).get("body", comment["body"])
                comment["updated_at"] = _now()
                return self._json(200, comment)
            if self.command == "DELETE":
                for comments in self.server.state.forgejo_comments.values():
                    if comment in comments:
                        comments.remove(comment)
                for asset in comment["assets"]:
                    self.server.state.forgejo_attachments.pop(asset["uuid"], None)
                return 204, {}, b""
            raise HTTPError(405, {"message": "method not allowed"})
        attachment_id = m.group(3)
        if attachment_id is None and self.command == "GET":
            return self._json(200, comment["assets"])
        if attachment_id is None and self.command == "POST":
            attachment = self._forgejo_attach(query, form, comment["id"])
            comment["assets"].append(attachment)
            return self._json(201, attachment)
        found = next((a for a in comment["assets"] if str(a["id"]) == attachment_id), None)
        if found is None:
            raise self._not_found()
        if self.command == "GET":
            return self._json(200, found)
        if self.command == "DELETE":
            comment["assets"].remove(found)
            self.server.state.forgejo_attachments.pop(found["uuid"], None)
            return 204, {}, b""
        raise HTTPError(405, {"message": "method not allowed"})

    # -- uploaded files, as a browser fetches them -------------------------------------------
    def _files(self, path: str) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        data = state.gitlab_uploads.get(path)
        m = re.fullmatch(r"/attachments/([0-9a-f-]+)", path)
        if data is None and m and m.group(1) in state.forgejo_attachments:
            data = state.forgejo_attachments[m.group(1)][1]
        if data is None:
            raise HTTPError(404, {"message": "404 Not Found"})
        ctype = "image/png" if data.startswith(b"\x89PNG") else "application/octet-stream"
        return 200, {"Content-Type": ctype}, data


# -- what `mlops doctor` asks: versions and a token's own scopes ------------------------------
GITLAB_VERSION = {"version": "17.6.0-ee", "revision": "1e5e5ee1b8a", "enterprise": True}
FORGEJO_VERSION = {"version": "9.0.3+gitea-1.22.0"}


def token_endpoints(handler: Handler, path: str) -> tuple[int, dict[str, str], bytes] | None:
    """GitLab ``GET /version`` (any valid token) and ``GET /personal_access_tokens/self``
    (docs.gitlab.com/api/personal_access_tokens: the token's id, name, scopes, active, revoked,
    expires_at); Forgejo ``GET /version`` (public). None: not one of these."""
    if handler.command != "GET":
        return None
    if path.endswith(".git/info/refs"):
        return git_refs(handler, path)
    if path == "/api/v1/version":
        return handler._json(200, FORGEJO_VERSION)
    if path not in ("/api/v4/version", "/api/v4/personal_access_tokens/self"):
        return None
    kind, info = handler._gitlab_token()
    if path == "/api/v4/version":
        return handler._json(200, GITLAB_VERSION)
    if kind == "job":
        raise HTTPError(401, {"message": "401 Unauthorized"})
    expires = info.get("expires_at")
    return handler._json(
        200,
        {
            "id": int(hashlib.sha256(info["user"].encode()).hexdigest()[:5], 16),
            "name": f"{info['user']}-token",
            "revoked": bool(info.get("revoked", False)),
            "created_at": "2026-01-05T10:00:00.000Z",
            "description": "",
            "scopes": list(info["scopes"]),
            "user_id": handler._gitlab_user(info["user"])["id"],
            "last_used_at": _now(),
            "active": not info.get("revoked", False),
            "expires_at": expires,
        },
    )


def trigger_endpoints(
    handler: Handler, path: str, body: Any
) -> tuple[int, dict[str, str], bytes] | None:
    """Starting a pipeline run from outside (the retrain receiver). None: not one of these.

    - GitLab (docs.gitlab.com/api/pipeline_triggers, "Trigger a pipeline with a token"):
      ``POST /api/v4/projects/:id/trigger/pipeline`` with ``token``, ``ref`` and optional
      ``variables`` (a hash) as JSON or form fields (``variables[KEY]=value``). An unknown
      token is 404; no ``ref`` 400 "ref is missing"; a ref that is not a branch 400 "Reference
      not found". Answers 201 with the pipeline (``id``, ``iid``, ``ref``, ``sha``,
      ``status: created``, ``source: trigger``, ``web_url`` …).
    - Forgejo (swagger ``DispatchWorkflowOption``):
      ``POST /api/v1/repos/{owner}/{repo}/actions/workflows/{workflowfilename}/dispatches``
      with ``{"ref", "inputs": {name: string}}``, ``Authorization: token …`` with
      write:repository (else 403; unknown token 401); unknown workflow 404; no ref 422.
      Answers 204.
    Each run started is kept in the state's ``triggers``."""
    if handler.command != "POST":
        return None
    state = handler.server.state
    gitlab = re.fullmatch(r"/api/v4/projects/(.+?)/trigger/pipeline", path)
    if gitlab:
        data = dict(body or {})
        variables = dict(data.get("variables") or {})
        for key in [k for k in data if k.startswith("variables[") and k.endswith("]")]:
            variables[key[len("variables[") : -1]] = data.pop(key)
        pid, project = handler._gitlab_project(gitlab.group(1))
        if data.get("token") not in state.config["gitlab"].get("trigger_tokens", []):
            raise HTTPError(404, {"message": "404 Not Found"})
        if not data.get("ref"):
            raise HTTPError(400, {"error": "ref is missing"})
        if data["ref"] != TARGET_BRANCH:
            raise HTTPError(400, {"message": {"base": ["Reference not found"]}})
        if not all(isinstance(v, str) for v in variables.values()):
            raise HTTPError(400, {"error": "variables is invalid"})
        pipeline_id = state.new_id()
        base = f"http://{handler.headers.get('Host')}"
        pipeline = {
            "id": pipeline_id,
            "iid": len(state.triggers) + 1,
            "project_id": int(pid),
            "sha": "0" * 40,
            "ref": data["ref"],
            "status": "created",
            "source": "trigger",
            "created_at": _now(),
            "updated_at": _now(),
            "web_url": f"{base}/{project['path']}/-/pipelines/{pipeline_id}",
        }
        state.triggers.append(
            {"forge": "gitlab", "project": pid, "ref": data["ref"], "variables": variables}
        )
        return handler._json(201, pipeline)
    forgejo = re.fullmatch(
        r"/api/v1/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches", path
    )
    if not forgejo:
        return None
    repo, workflow = forgejo.groups()
    token = handler._forgejo_token(write=False)
    if "write:repository" not in token["scopes"]:
        raise HTTPError(403, {"message": "token does not have required scope: write:repository"})
    config = state.config["forgejo"]["repos"].get(repo)
    if config is None:
        raise HTTPError(404, {"message": "The target couldn't be found."})
    if workflow not in config.get("workflows", []):
        raise HTTPError(404, {"message": f"workflow {workflow!r} not found"})
    data = dict(body or {})
    if not data.get("ref"):
        raise HTTPError(422, {"message": "[Ref]: Required"})
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
        raise HTTPError(422, {"message": "inputs must map names to strings"})
    state.triggers.append(
        {
            "forge": "forgejo",
            "repo": repo,
            "workflow": workflow,
            "ref": data["ref"],
            "inputs": inputs,
        }
    )
    return 204, {}, b""


# Who may push over git's smart HTTP (a token as the Basic password, any user name): GitLab
# "api" or "write_repository", Forgejo "write:repository".
GIT_PUSH_SCOPES = {"gitlab": {"api", "write_repository"}, "forgejo": {"write:repository"}}


def _pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def git_refs(handler: Handler, path: str) -> tuple[int, dict[str, str], bytes]:
    """``GET /<project>.git/info/refs?service=git-(upload|receive)-pack`` (git's smart HTTP,
    gitprotocol-http): the ref advertisement of an empty repository, which is all that
    ``git push --dry-run`` reads. Unknown token 401 with a Basic challenge; a token without a
    push scope 403 on receive-pack; unknown project 404."""
    import base64

    service = parse_qs(urlsplit(handler.path).query).get("service", [""])[0]
    if service not in ("git-upload-pack", "git-receive-pack"):
        raise HTTPError(403, {"message": "only smart HTTP is served"})
    project = path[1 : -len(".git/info/refs")]
    config = handler.server.state.config
    gitlab_paths = [p["path"] for p in config["gitlab"]["projects"].values()]
    forge = "forgejo" if project in config["forgejo"]["repos"] else "gitlab"
    if forge == "gitlab" and project not in gitlab_paths:
        raise HTTPError(404, {"message": "The project you were looking for could not be found."})
    scheme, _, value = handler.headers.get("Authorization", "").partition(" ")
    password = ""
    if scheme.lower() == "basic":
        password = base64.b64decode(value).decode(errors="replace").partition(":")[2]
    info = config[forge]["tokens"].get(password)
    if info is None:
        challenge = {"WWW-Authenticate": 'Basic realm="forge"', "Content-Type": "text/plain"}
        return 401, challenge, b"HTTP Basic: Access denied\n"
    if service == "git-receive-pack" and not GIT_PUSH_SCOPES[forge] & set(info["scopes"]):
        return 403, {"Content-Type": "text/plain"}, b"You are not allowed to push code.\n"
    capabilities = b"report-status delete-refs side-band-64k ofs-delta agent=forge-test"
    body = (
        _pkt(f"# service={service}\n".encode())
        + b"0000"
        + _pkt(b"0" * 40 + b" capabilities^{}\x00" + capabilities + b"\n")
        + b"0000"
    )
    return 200, {"Content-Type": f"application/x-{service}-advertisement"}, body


class ForgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: State) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="JSON replacing DEFAULT_CONFIG")
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text()) if args.config else DEFAULT_CONFIG
    args.state.mkdir(parents=True, exist_ok=True)
    server = ForgeHTTPServer(args.port, State(config, args.state))
    (args.state / "forge.pid").write_text(str(__import__("os").getpid()))
    server.serve_forever(poll_interval=0.1)


# -- the fixture side (imported by tests; the code above runs in the server process) ----------


class ForgeServer:
    """The forge as a subprocess on a free 127.0.0.1 port, state in ``state_dir``, stopped by PID.

    ``gitlab_env()`` / ``forgejo_env()`` give the CI variables ``mlops comment`` reads, pointing
    at this server (see docs/comment.md).
    """

    def __init__(self, state_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.state_dir = state_dir
        self.config = config
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForgeServer:
        from tests.support.ports import free_port, wait_for_port

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [sys.executable, __file__, "--port", str(self.port), "--state", str(self.state_dir)]
        if self.config is not None:
            config_file = self.state_dir / "config.json"
            config_file.write_text(json.dumps(self.config))
            cmd += ["--config", str(config_file)]
        log = (self.state_dir / "server.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=15)
        return self

    def stop(self) -> None:
        from tests.support.process import stop_process

        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        response = httpx.request(method, self.url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict[str, Any]]:
        """Every API request so far (not the /_forge/ control calls), oldest first."""
        return list(self._call("GET", "/_forge/requests"))

    def api_requests(self, method: str | None = None) -> Iterator[dict[str, Any]]:
        for entry in self.requests():
            if method is None or entry["method"] == method:
                yield entry

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_forge/state"))

    def triggers(self) -> list[dict[str, Any]]:
        """Pipeline runs started through the trigger/dispatch APIs, oldest first."""
        return list(self.state()["triggers"])

    def gitlab_notes(self) -> list[dict[str, Any]]:
        return list(self.state()["gitlab_notes"].get(f"{GITLAB_PROJECT_ID}!{GITLAB_MR_IID}", []))

    def forgejo_comments(self) -> list[dict[str, Any]]:
        return list(self.state()["forgejo_comments"].get(f"{FORGEJO_REPO}#{FORGEJO_PR}", []))

    def fetch(self, url: str) -> bytes:
        """GET an absolute URL on this server (an uploaded image, as a browser would)."""
        import httpx

        assert url.startswith(self.url + "/"), f"{url} is not on the local forge {self.url}"
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        return response.content

    def seed(self, forge: str, count: int, body: str = "review comment {n}", **where: Any) -> None:
        """Add ``count`` comments by another user (GitLab: project, mr; Forgejo: repo, index)."""
        defaults: dict[str, Any] = (
            {"project": GITLAB_PROJECT_ID, "mr": GITLAB_MR_IID}
            if forge == "gitlab"
            else {"repo": FORGEJO_REPO, "index": FORGEJO_PR}
        )
        self._call(
            "POST",
            "/_forge/seed",
            {"forge": forge, "count": count, "body": body, **defaults, **where},
        )

    def fail_next(
        self, status: int, times: int = 1, path_contains: str = "", method: str | None = None
    ) -> None:
        """The next ``times`` API requests whose path contains ``path_contains`` (and of
        ``method``, if given) answer ``status`` without touching the state."""
        self._call(
            "POST",
            "/_forge/fail",
            {"status": status, "times": times, "path_contains": path_contains, "method": method},
        )

    def hold_until(
        self, parties: int, path_contains: str, method: str = "GET", timeout: float = 30
    ) -> None:
        """The next ``parties`` matching requests wait for each other: truly concurrent readers."""
        self._call(
            "POST",
            "/_forge/barrier",
            {
                "parties": parties,
                "path_contains": path_contains,
                "method": method,
                "timeout": timeout,
            },
        )

    def gitlab_env(self, token: str | None = GITLAB_TOKEN) -> dict[str, str]:
        env = {
            "GITLAB_CI": "true",
            "CI_SERVER_URL": self.url,
            "CI_API_V4_URL": f"{self.url}/api/v4",
            "CI_PROJECT_ID": str(GITLAB_PROJECT_ID),
            "CI_PROJECT_PATH": GITLAB_PROJECT_PATH,
            "CI_MERGE_REQUEST_IID": str(GITLAB_MR_IID),
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": TARGET_BRANCH,
            "CI_JOB_TOKEN": GITLAB_JOB_TOKEN,
        }
        if token is not None:
            env["MLOPS_COMMENT_TOKEN"] = token
        return env

    def forgejo_env(
        self, event_path: Path, token: str | None = FORGEJO_TOKEN, target: str = TARGET_BRANCH
    ) -> dict[str, str]:
        """Forgejo Actions variables; writes the ``pull_request`` event JSON to ``event_path``.
        ``target=""``: no target branch (no diff)."""
        pull: dict[str, Any] = {"number": FORGEJO_PR}
        if target:
            pull["base"] = {"ref": target}
        event_path.write_text(json.dumps({"number": FORGEJO_PR, "pull_request": pull}))
        env = {
            "FORGEJO_ACTIONS": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": self.url,
            "GITHUB_API_URL": f"{self.url}/api/v1",
            "GITHUB_REPOSITORY": FORGEJO_REPO,
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_BASE_REF": target,
            "GITHUB_WORKFLOW": "ci",
        }
        if token is not None:
            env["MLOPS_COMMENT_TOKEN"] = token
        return env


def forge_server_fixture(tmp_path: Path) -> Iterator[ForgeServer]:
    server = ForgeServer(tmp_path / "forge").start()
    try:
        yield server
    finally:
        server.stop()


try:  # the pytest fixture; import it into a conftest: ``from tests.support.forge_server import
    # forge_server  # noqa: F401``
    import pytest

    @pytest.fixture
    def forge_server(tmp_path: Path) -> Iterator[ForgeServer]:
        """A fresh local forge (GitLab + Forgejo APIs) per test."""
        yield from forge_server_fixture(tmp_path)

except ImportError:  # the server process does not need pytest
    pass


if __name__ == "__main__":
    main()
