"""The local forge answers as the documented APIs do, so the comment tests mean something."""

from __future__ import annotations

import gitlab
import httpx
import pytest

from tests.support.forge_server import (
    FORGEJO_PR,
    FORGEJO_READ_TOKEN,
    FORGEJO_REPO,
    FORGEJO_TOKEN,
    GITLAB_JOB_TOKEN,
    GITLAB_MR_IID,
    GITLAB_PROJECT_ID,
    GITLAB_READ_TOKEN,
    GITLAB_TOKEN,
    ForgeServer,
)


@pytest.mark.integration
def test_gitlab_notes_paginate_uploads_serve_and_tokens_are_scoped(
    forge_server: ForgeServer,
) -> None:
    forge_server.seed("gitlab", 45)
    gl = gitlab.Gitlab(forge_server.url, private_token=GITLAB_TOKEN)
    project = gl.projects.get(GITLAB_PROJECT_ID, lazy=True)
    mr = project.mergerequests.get(GITLAB_MR_IID, lazy=True)
    assert len(list(mr.notes.list(iterator=True))) == 45
    pages = [r for r in forge_server.requests() if r["path"].endswith("/notes")]
    assert [r["query"].get("page", "1") for r in pages] == ["1", "2", "3"]

    upload = project.upload("plot.png", filedata=b"\x89PNG fake")
    assert upload["url"].startswith("/uploads/") and upload["full_path"].endswith("/plot.png")
    assert forge_server.fetch(forge_server.url + upload["full_path"]) == b"\x89PNG fake"

    for kwargs in ({"job_token": GITLAB_JOB_TOKEN}, {"private_token": GITLAB_READ_TOKEN}):
        ro = gitlab.Gitlab(forge_server.url, **kwargs)
        with pytest.raises(gitlab.GitlabCreateError) as err:
            ro.projects.get(GITLAB_PROJECT_ID, lazy=True).mergerequests.get(
                GITLAB_MR_IID, lazy=True
            ).notes.create({"body": "x"})
        assert err.value.response_code == 403
    bad = gitlab.Gitlab(forge_server.url, private_token="nope")
    with pytest.raises(gitlab.GitlabAuthenticationError):
        bad.auth()


@pytest.mark.integration
def test_forgejo_comments_attachments_and_401_403(forge_server: ForgeServer) -> None:
    api = f"{forge_server.url}/api/v1/repos/{FORGEJO_REPO}"
    auth = {"Authorization": f"token {FORGEJO_TOKEN}"}
    created = httpx.post(f"{api}/issues/{FORGEJO_PR}/comments", json={"body": "a"}, headers=auth)
    assert created.status_code == 201
    cid = created.json()["id"]
    asset = httpx.post(
        f"{api}/issues/comments/{cid}/assets",
        params={"name": "p.png"},
        files={"attachment": ("p.png", b"\x89PNG", "image/png")},
        headers=auth,
    )
    assert asset.status_code == 201
    assert forge_server.fetch(asset.json()["browser_download_url"]) == b"\x89PNG"
    edit = httpx.patch(f"{api}/issues/comments/{cid}", json={"body": "b"}, headers=auth)
    assert edit.status_code == 200 and forge_server.forgejo_comments()[0]["body"] == "b"
    read_only = {"Authorization": f"token {FORGEJO_READ_TOKEN}"}
    assert (
        httpx.patch(f"{api}/issues/comments/{cid}", json={}, headers=read_only).status_code == 403
    )
    assert httpx.get(f"{api}/issues/{FORGEJO_PR}/comments").status_code == 401
    assert httpx.get(f"{api}/issues/999/comments", headers=auth).status_code == 404
