"""``mlops deploy bump`` / ``mlops deploy promote``: the GitOps half of CI on main."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import UserError, exits_cleanly

app = typer.Typer(
    name="deploy",
    help="GitOps: pin the inference image in k8s/overlays/<env> and promote staging to prod.",
    no_args_is_help=True,
)

Branch = Annotated[
    str | None,
    typer.Option(help="Branch that holds k8s/ (default: the forge's default branch, else main)."),
]


def _default_branch(branch: str | None) -> str:
    return branch or os.environ.get("CI_DEFAULT_BRANCH") or "main"


def _source_commit(commit: str | None) -> str:
    from machinery.ci.git import out

    return (
        commit
        or os.environ.get("CI_COMMIT_SHA")
        or os.environ.get("GITHUB_SHA")
        or out("rev-parse", "HEAD")
    )


def _image(image: str | None, image_file: Path | None) -> tuple[str, str | None]:
    """The image reference, and the commit it was built from when the record says so."""
    if image_file is not None:
        if not image_file.is_file():
            raise UserError(f"{image_file}: not found (make image writes it)")
        text = image_file.read_text().strip()
        if not text.startswith("{"):
            return text, None
        try:
            record = json.loads(text)
            return str(record["reference"]), record.get("commit")
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{image_file}: not an image record (no 'reference')") from None
    if image:
        return image, None
    raise UserError("say which image: --image NAME@sha256:… or --image-file reports/image.json")


class ForeignImage(UserError):
    exit_code = 3


def _own_repository(name: str) -> None:
    """Refuse to pin an image from anywhere but the repository CI pushes to (IMAGE_NAME, or the
    forge's registry): whoever can run the bump must not be able to deploy someone else's."""
    from machinery.image.target import configured_name

    own, source = configured_name(os.environ)
    if name != own:
        raise ForeignImage(
            f"image {name} is not this project's image repository {own} (from {source}): "
            "refusing to deploy it"
        )


@app.command()
@exits_cleanly
def bump(
    env: Annotated[str, typer.Option(help="Overlay to edit: k8s/overlays/<env>.")] = "staging",
    image: Annotated[
        str | None, typer.Option(help="NAME@sha256:<digest>, as the registry reported it.")
    ] = None,
    image_file: Annotated[
        Path | None,
        typer.Option(help="make image's record (reports/image.json) or a file with NAME@DIGEST."),
    ] = None,
    commit: Annotated[
        str | None, typer.Option(help="Commit the image was built from (default: CI's).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Experiment tag of that commit, if any.")] = None,
    branch: Branch = None,
    push: Annotated[
        bool, typer.Option(help="Commit and push (CI); --no-push edits the local file only.")
    ] = True,
) -> None:
    """Pin the inference image by digest in the overlay, commit and push (no-op if pinned)."""
    from machinery.deploy.bump import bump as run_bump
    from machinery.deploy.overlay import ImageRef

    text, recorded = _image(image, image_file)
    ref = ImageRef.parse(text)
    _own_repository(ref.name)
    source = _source_commit(commit or recorded)
    pipeline = os.environ.get("CI_PIPELINE_URL") or os.environ.get("GITHUB_RUN_ID")
    why = f"The main pipeline{f' {pipeline}' if pipeline else ''} built and pushed it."
    result = run_bump(
        repo=Path.cwd(),
        env=env,
        image=ref,
        source=source,
        why=why,
        branch=_default_branch(branch),
        push=push,
        vars=os.environ,
        tag=tag,
    )
    if result.push is None:
        typer.echo(f"{env}: pinned {ref} in the local overlay (not committed)")
    elif result.push.commit is None:
        typer.echo(f"{env}: already pins {ref.digest[:19]}, nothing to commit")
    else:
        typer.echo(f"{env}: pinned {ref} in {result.push.commit[:12]} (pushed)")


@app.command()
@exits_cleanly
def promote(
    branch: Branch = None,
    by: Annotated[str | None, typer.Option(help="Who promotes (default: CI user).")] = None,
) -> None:
    """Move alias prod to staging's tag and pin prod to staging's image, in one step; refuse
    when staging's tag and image were not built from the same commit."""
    from machinery.deploy.promote import deploy_tag
    from machinery.deploy.promote import promote as run_promote
    from machinery.registry.registry import registry_url_from_env

    who = by or os.environ.get("GITLAB_USER_LOGIN") or os.environ.get("GITHUB_ACTOR") or "ci"
    done = run_promote(
        repo=Path.cwd(),
        registry_url=registry_url_from_env(),
        branch=_default_branch(branch),
        by=who,
        vars=os.environ,
    )
    pushed = f"commit {done.push.commit[:12]}" if done.push.commit else "overlay already pinned"
    where = "moved to" if done.moved else "already at"
    typer.echo(
        f"prod → {done.tag} (image {done.image.digest[:19]}, {pushed}; "
        f"{deploy_tag('prod')} {where} {done.revision[:12]})"
    )
