"""Where the image goes, read from the CI environment (GitLab, Forgejo, or explicit variables).

Resolution order, first match wins:

1. ``IMAGE_NAME`` (any registry: Harbor, Forgejo, a local one), credentials from
   ``IMAGE_REGISTRY_USER`` / ``IMAGE_REGISTRY_PASSWORD`` when set;
2. GitLab: ``CI_REGISTRY_IMAGE/inference`` with ``CI_REGISTRY_USER`` / ``CI_REGISTRY_PASSWORD``
   (GitLab provides all three in every job when the project's container registry is on);
3. Forgejo Actions: ``<host of GITHUB_SERVER_URL>/<GITHUB_REPOSITORY>/inference`` (Forgejo's own
   package registry names images ``{host}/{owner}/{image}``), credentials from
   ``IMAGE_REGISTRY_USER`` / ``IMAGE_REGISTRY_PASSWORD`` (a token with ``write:package``).

The tag is ``IMAGE_TAG``, else the commit SHA (``CI_COMMIT_SHA`` / ``GITHUB_SHA`` / ``git``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from machinery.errors import UserError

IMAGE_SUBNAME = "inference"  # the overlay's images entry is named the same (DESIGN.md)
# Docker's reference grammar, simplified: lowercase path components, optional host[:port].
_NAME = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TRUE = {"1", "true", "yes", "on"}


class ImageConfigError(UserError):
    """The CI variables do not say where the image goes, or say it wrongly."""


@dataclass(frozen=True)
class ImageTarget:
    name: str  # repository without tag: HOST[:PORT]/PATH
    tag: str
    commit: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_verify: bool = True
    source: str = "IMAGE_NAME"  # which variables it came from, for the log line

    @property
    def registry(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


def target_from_env(env: Mapping[str, str], *, need_credentials: bool = False) -> ImageTarget:
    """The push target the CI variables describe; one clear error naming what to set."""
    name, user, password, source = _name_and_credentials(env)
    _check_name(name, source)
    commit = _commit(env, required=not env.get("IMAGE_TAG"))
    tag = env.get("IMAGE_TAG") or commit
    if not _TAG.match(tag):
        raise ImageConfigError(f"image tag {tag!r} is not a valid tag (set IMAGE_TAG)")
    if need_credentials and (user is None) != (password is None):
        missing = "IMAGE_REGISTRY_PASSWORD" if password is None else "IMAGE_REGISTRY_USER"
        raise ImageConfigError(f"registry user without password or back: set {missing}")
    insecure = env.get("IMAGE_REGISTRY_INSECURE", "").strip().lower() in _TRUE
    return ImageTarget(name, tag, commit, user, password, not insecure, source)


def configured_name(env: Mapping[str, str]) -> tuple[str, str]:
    """The image repository the CI variables name, and which variables named it."""
    name, _, _, source = _name_and_credentials(env)
    _check_name(name, source)
    return name, source


def _check_name(name: str, source: str) -> None:
    if not _NAME.match(name):
        raise ImageConfigError(
            f"image name {name!r} (from {source}) is not HOST/PATH in lowercase, "
            "e.g. registry.example.com/team/project/inference"
        )


def _name_and_credentials(env: Mapping[str, str]) -> tuple[str, str | None, str | None, str]:
    user = env.get("IMAGE_REGISTRY_USER") or None
    password = env.get("IMAGE_REGISTRY_PASSWORD") or None
    if env.get("IMAGE_NAME"):
        return env["IMAGE_NAME"].strip().lower(), user, password, "IMAGE_NAME"
    if env.get("CI_REGISTRY_IMAGE"):
        name = f"{env['CI_REGISTRY_IMAGE'].strip().lower()}/{IMAGE_SUBNAME}"
        return (
            name,
            user or env.get("CI_REGISTRY_USER") or None,
            password or env.get("CI_REGISTRY_PASSWORD") or None,
            "CI_REGISTRY_IMAGE",
        )
    server, repository = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    if server and repository:
        host = urlsplit(server).netloc
        name = f"{host}/{repository}/{IMAGE_SUBNAME}".lower()
        return name, user, password, "GITHUB_SERVER_URL + GITHUB_REPOSITORY"
    raise ImageConfigError(
        "no image registry configured: set IMAGE_NAME (e.g. registry.example.com/team/inference), "
        "or run in GitLab CI with the container registry on (CI_REGISTRY_IMAGE)"
    )


def _commit(env: Mapping[str, str], *, required: bool) -> str:
    for key in ("CI_COMMIT_SHA", "GITHUB_SHA"):
        if env.get(key):
            return env[key]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        if not required:
            return ""
        raise ImageConfigError(
            "no commit to tag the image with: not in a git checkout and neither CI_COMMIT_SHA "
            "nor GITHUB_SHA is set (or set IMAGE_TAG)"
        ) from None
    return out.stdout.strip()
