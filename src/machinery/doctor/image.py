"""The image registry: ``/v2/`` with the configured login (Basic or Bearer, as the registry's
``WWW-Authenticate`` asks), for the push target the image job resolves from the same variables."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, ok

TIMEOUT = 5.0
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
CREDENTIALS = "IMAGE_REGISTRY_USER / IMAGE_REGISTRY_PASSWORD"


def _jwt_actions(token: str, path: str) -> list[str] | None:
    """The actions a registry token grants on ``path`` (the JWT's ``access`` claim), if it says."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None  # an opaque token: the registry decides at push time
    for entry in claims.get("access") or []:
        if entry.get("type") == "repository" and entry.get("name") == path:
            return list(entry.get("actions") or [])
    return [] if "access" in claims else None


def _bearer(client: Any, challenge: str, path: str, auth: tuple[str, str]) -> str:
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise Failed("the registry asks for a token but names no realm", "check IMAGE_NAME's host")
    params["scope"] = f"repository:{path}:pull,push"
    answer = client.get(realm, params=params, auth=auth)
    if answer.status_code in (401, 403):
        raise Failed(
            f"the registry's token service refused {auth[0]!r} ({answer.status_code})",
            f"set {CREDENTIALS} to an account (or token) that may push",
        )
    answer.raise_for_status()
    body = answer.json()
    token = str(body.get("token") or body.get("access_token") or "")
    actions = _jwt_actions(token, path)
    if actions is not None and "push" not in actions:
        raise Failed(
            f"{auth[0]!r} may not push to {path} (granted: {','.join(actions) or 'nothing'})",
            f"give {auth[0]!r} write access to {path}, or set IMAGE_NAME to a repository it owns",
        )
    return token


def ping(env: Env) -> str:
    import httpx

    from machinery.image.target import ImageConfigError, target_from_env

    if not (env.get("IMAGE_NAME") or env.get("CI_REGISTRY_IMAGE") or env.get("GITHUB_SERVER_URL")):
        raise NotConfigured("IMAGE_NAME not set (and not in GitLab/Forgejo CI)")
    try:
        # The tag does not matter here; without one, target_from_env would ask git for HEAD.
        target = target_from_env({"IMAGE_TAG": "doctor", **env})
    except ImageConfigError as exc:
        raise Failed(str(exc), "set IMAGE_NAME to HOST/PATH in lowercase") from None
    scheme = "https" if target.tls_verify else "http"
    path = target.name.split("/", 1)[1]
    where = f"{scheme}://{target.registry}/v2/"
    auth = (target.user, target.password) if target.user and target.password else None
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            first = client.get(where)
            if first.status_code == 200:
                return f"{target.name} (from {target.source}): registry open, no login needed"
            challenge = first.headers.get("WWW-Authenticate", "")
            if first.status_code != 401 or not challenge:
                raise Failed(
                    f"{where} answered {first.status_code}: not a container registry",
                    "check the host in IMAGE_NAME",
                )
            if auth is None:
                raise Failed(
                    f"{target.registry} wants a login and none is configured",
                    f"set {CREDENTIALS}",
                )
            if challenge.lower().startswith("bearer"):
                token = _bearer(client, challenge, path, auth)
                second = client.get(where, headers={"Authorization": f"Bearer {token}"})
            else:
                second = client.get(where, auth=auth)
    except httpx.HTTPError as exc:
        raise Failed(
            f"cannot reach the registry {target.registry} ({type(exc).__name__})",
            "check the host in IMAGE_NAME (IMAGE_REGISTRY_INSECURE=1 for a plain-http registry)",
        ) from None
    if second.status_code != 200:
        raise Failed(
            f"{target.registry} refused the login of {auth[0]!r} ({second.status_code})",
            f"set IMAGE_REGISTRY_PASSWORD to the password or token of {auth[0]!r}",
        )
    return f"pushes to {target.name} (from {target.source}); login of {auth[0]!r} accepted"


def run(env: Env) -> list[Row]:
    return [ok("image registry", ping(env))]


CHECKS = [Check("image registry", 8.0, run)]
