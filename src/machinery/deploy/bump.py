"""Pin an image in an environment's overlay and push the commit (``mlops deploy bump``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from machinery.deploy.gitops import SKIP_CI, PushResult, commit_and_push
from machinery.deploy.overlay import ImageRef, overlay_path, set_image

DIGEST_TRAILER = "Image-Digest"
COMMIT_TRAILER = "Image-Commit"
TAG_TRAILER = "Model-Tag"


@dataclass(frozen=True)
class BumpResult:
    env: str
    image: ImageRef
    push: PushResult | None  # None: edited the local file only


def bump_message(env: str, image: ImageRef, source: str, why: str, tag: str | None) -> str:
    """Subject says what; body says why; trailers let ``promote`` trace the image's commit."""
    rel = f"k8s/overlays/{env}/kustomization.yaml"
    trailers = [f"{DIGEST_TRAILER}: {image.digest}", f"{COMMIT_TRAILER}: {source}"]
    if tag:
        trailers.append(f"{TAG_TRAILER}: {tag}")
    return (
        f"deploy({env}): inference image {image.digest[:19]} from {source[:12]} {SKIP_CI}\n\n"
        f"Pin {rel} to\n  {image}\n"
        f"{why}\nArgo CD syncs the {env} Deployment to it. {SKIP_CI} keeps this commit from "
        "starting another pipeline.\n\n" + "\n".join(trailers) + "\n"
    )


def bump(
    *,
    repo: Path,
    env: str,
    image: ImageRef,
    source: str,
    why: str,
    branch: str,
    push: bool,
    vars: Mapping[str, str],
    tag: str | None = None,
) -> BumpResult:
    rel = overlay_path(Path(), env)
    if not push:
        set_image(repo / rel, image)
        return BumpResult(env, image, None)
    result = commit_and_push(
        repo=repo,
        branch=branch,
        paths=[str(rel)],
        message=bump_message(env, image, source, why, tag),
        edit=lambda work: set_image(work / rel, image),
        env=vars,
    )
    return BumpResult(env, image, result)
