"""``mlops``: the single entry point CI and the Makefile call.

Each area registers its own Typer sub-app here; jobs on both forges call the same commands.
"""

from __future__ import annotations

import typer

from machinery.ci.cli import app as ci_app
from machinery.deploy.cli import app as deploy_app
from machinery.comment.cli import comment
from machinery.image.cli import app as image_app
from machinery.registry.cli import app as registry_app
from machinery.report.cli import report
from machinery.slurm.command import OFFLOAD_OPTIONS, offload
from machinery.where import where

app = typer.Typer(
    name="mlops",
    help="Template machinery: report, Slurm offload, model registry, PR comment, GitOps bump.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Keeps ``mlops`` a command group even while only one command is registered."""


# Sub-apps (one line each, alphabetical).
app.add_typer(ci_app, name="ci")
app.add_typer(deploy_app, name="deploy")
app.command("comment")(comment)
app.add_typer(image_app, name="image")
app.command("offload", **OFFLOAD_OPTIONS)(offload)
app.add_typer(registry_app, name="registry")
app.command("report")(report)
app.command("where")(where)


def main() -> None:
    app()
