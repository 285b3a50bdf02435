"""``mlops image build|push|sbom|show``: what the CI image job calls (make image, make sbom).

Heavy work happens in buildah and cyclonedx-py subprocesses; this module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import exits_cleanly
from machinery.image.builder import DEFAULT_RECORD

app = typer.Typer(
    name="image",
    help="The inference image: build (buildah), push + record the digest, CycloneDX SBOM.",
    no_args_is_help=True,
)

Record = Annotated[
    Path,
    typer.Option("--record", envvar="IMAGE_RECORD", help="Where the pushed digest is written."),
]
Context = Annotated[Path, typer.Option(help="Build context: the repository root.")]


@app.command()
@exits_cleanly
def build(context: Context = Path(".")) -> None:
    """Build service/Dockerfile, tagged NAME:COMMIT_SHA (NAME from the CI variables)."""
    from machinery.image.builder import Builder
    from machinery.image.builder import build as build_image
    from machinery.image.target import target_from_env

    target = target_from_env(os.environ)
    typer.echo(f"building {target.reference} (name from {target.source})", err=True)
    image_id = build_image(target, Builder.from_env(os.environ), os.environ, context)
    typer.echo(f"built {target.reference} ({image_id[:19]})")


@app.command()
@exits_cleanly
def push(record: Record = DEFAULT_RECORD) -> None:
    """Push NAME:COMMIT_SHA and write {name, tag, digest, ...} to --record for the deploy bump."""
    from machinery.image.builder import Builder
    from machinery.image.builder import push as push_image
    from machinery.image.builder import record as write_record
    from machinery.image.target import target_from_env

    target = target_from_env(os.environ, need_credentials=True)
    digest = push_image(target, Builder.from_env(os.environ))
    data = write_record(target, digest, record)
    typer.echo(f"pushed {data['reference']} → {record}")


@app.command()
@exits_cleanly
def sbom(
    output: Annotated[Path, typer.Option("-o", "--output", help="CycloneDX JSON file.")] = Path(
        "reports/sbom.cdx.json"
    ),
    record: Record = DEFAULT_RECORD,
) -> None:
    """CycloneDX SBOM of the Python packages inside the built image (cyclonedx-py)."""
    from machinery.image.builder import Builder
    from machinery.image.sbom import write_sbom
    from machinery.image.target import target_from_env

    target = target_from_env(os.environ)
    count = write_sbom(target, Builder.from_env(os.environ), output, record)
    typer.echo(f"SBOM of {target.reference}: {count} Python packages → {output}")


@app.command()
@exits_cleanly
def show(record: Record = DEFAULT_RECORD) -> None:
    """Print the recorded image (what the deploy bump will pin) as JSON."""
    from machinery.image.builder import read_record

    typer.echo(json.dumps(read_record(record), indent=2))
