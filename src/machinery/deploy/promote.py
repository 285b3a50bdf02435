"""Promote staging to prod in one step (``mlops deploy promote``).

Prod gets what staging runs: the registry alias ``prod`` moves to staging's tag and the prod
overlay is pinned to staging's image digest. It refuses when staging's tag and staging's image
were not built from the same commit (a main pipeline whose image job failed after its publish
moved ``staging``, or a hand edit of the overlay): prod would then pair a model with code it was
never tested with. The image's commit comes from the ``Image-Commit`` trailer of the bump commit
that pinned the digest staging runs now; the tag's commit from the registry.

Prod's Argo CD Application does not follow ``main``: it tracks the git tag ``deploy/prod``
(``deploy_tag``), and promotion moves that tag to the commit that pins prod's image. So a change
to ``k8s/base`` or ``monitoring/`` on main reaches staging at once and prod only with the next
promotion, together with the image staging ran it with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from machinery.ci.git import git
from machinery.deploy.bump import COMMIT_TRAILER, DIGEST_TRAILER, bump_message
from machinery.deploy.gitops import PushResult, commit_and_push, move_tag
from machinery.deploy.overlay import ImageRef, overlay_path, read_image, set_image
from machinery.errors import UserError


class PromoteRefused(UserError):
    exit_code = 3


def deploy_tag(env: str) -> str:
    """The git tag an environment's Argo CD Application tracks (k8s/argocd)."""
    return f"deploy/{env}"


@dataclass(frozen=True)
class Promotion:
    tag: str
    image: ImageRef
    commit: str
    push: PushResult
    revision: str  # the commit the target environment's deploy tag points at now
    moved: bool  # False: the tag was there already


def image_commit(work: Path, env: str, image: ImageRef) -> str | None:
    """The commit the image staging runs was built from, from the bump commit that pinned it."""
    rel = str(overlay_path(Path(), env))
    fmt = (
        f"%(trailers:key={DIGEST_TRAILER},valueonly,separator=)%x1f"
        f"%(trailers:key={COMMIT_TRAILER},valueonly,separator=)%x1e"
    )
    log = git("log", "-n", "200", f"--format={fmt}", "--", rel, cwd=work).stdout
    for record in log.split("\x1e"):
        digest, _, commit = record.strip().partition("\x1f")
        if digest.strip() == image.digest and commit.strip():
            return commit.strip()
    return None


def promote(
    *,
    repo: Path,
    registry_url: str,
    branch: str,
    by: str,
    vars: Mapping[str, str],
    source_env: str = "staging",
    target_env: str = "prod",
    source_alias: str = "staging",
    target_alias: str = "prod",
) -> Promotion:
    from machinery.registry.registry import Registry

    reg = Registry.from_url(registry_url)
    tag = reg.alias(source_alias).tag
    tag_commit = reg.meta(tag).commit
    seen: dict[str, object] = {}

    def edit(work: Path) -> bool:
        image = read_image(work / overlay_path(Path(), source_env))
        if image is None:
            raise PromoteRefused(f"the {source_env} overlay pins no image by digest yet")
        built_from = image_commit(work, source_env, image)
        if built_from is None:
            raise PromoteRefused(
                f"cannot tell which commit built {source_env}'s image {image.digest[:19]}: no "
                f"bump commit with an {COMMIT_TRAILER} trailer pinned it"
            )
        if built_from != tag_commit:
            raise PromoteRefused(
                f"{source_env}'s tag {tag} was trained on {tag_commit[:12]} but its image was "
                f"built from {built_from[:12]}: rerun the main pipeline of one commit first"
            )
        seen["image"] = image
        return set_image(work / overlay_path(Path(), target_env), image)

    def message() -> str:
        image = seen["image"]
        assert isinstance(image, ImageRef)
        why = (
            f"Promotes {source_env} to {target_env}: the image {source_env} runs, built from "
            f"{tag_commit[:12]}, with alias {target_alias} moved to tag {tag} (trained on the "
            "same commit)."
        )
        return bump_message(target_env, image, tag_commit, why, tag)

    result = commit_and_push(
        repo=repo,
        branch=branch,
        paths=[str(overlay_path(Path(), target_env))],
        message=message,
        edit=edit,
        env=vars,
    )
    image = seen.get("image")
    assert isinstance(image, ImageRef)
    # The tag is what Argo CD deploys prod from: main's tip, which now pins staging's image (a
    # rerun with nothing to commit re-points it there too, e.g. after a failed tag push).
    moved = move_tag(repo=repo, tag=deploy_tag(target_env), commit=result.tip, env=vars)
    reg.move_alias(target_alias, tag, by=by)
    return Promotion(
        tag=tag, image=image, commit=tag_commit, push=result, revision=result.tip, moved=moved
    )
