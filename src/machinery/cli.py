"""``mlops``: the single entry point CI and the Makefile call.

Each area registers its command or sub-app here, one line each, as ``name: Lazy(...)``: the
module is imported only when that command runs, so ``mlops --help`` and ``mlops offload`` do not
pay for boto3, paramiko, Jinja or DVC (``python -X importtime -m machinery.cli --help`` shows
what start-up costs; ``make bench-offload`` prints the figure). To add a command:

    "deploy": Lazy("machinery.deploy.cli:app", "Bump the image in a k8s overlay."),

``target`` is ``module:attribute`` naming a ``typer.Typer`` (a sub-app) or a plain function (a
command); ``help`` is the one line ``mlops --help`` shows without importing the module;
``options`` are extra ``app.command()`` settings. In command modules, import heavy libraries
inside the functions that use them, not at module top.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import typer

# Typer 0.29 carries its own click; its group API is typed with these classes.
from typer._click import Command, Context, HelpFormatter
from typer.core import TyperGroup

# Everything after the stage name belongs to CMD, options included (`-- python -m ...`).
OFFLOAD_OPTIONS: dict[str, Any] = {
    "context_settings": {"allow_interspersed_args": False},
    "no_args_is_help": True,
}


@dataclass(frozen=True)
class Lazy:
    target: str
    help: str
    options: dict[str, Any] = field(default_factory=dict)

    def load(self, name: str) -> Command:
        module, _, attr = self.target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, typer.Typer):
            group = typer.main.get_group(obj)
            group.name = name
            return group
        single = typer.Typer()
        single.command(name, **self.options)(obj)
        command = typer.main.get_command(single)
        command.name = name
        return command


# Commands and sub-apps (one line each, alphabetical).
COMMANDS: dict[str, Lazy] = {
    "ci": Lazy("machinery.ci.cli:app", "CI helpers: the experiment tag of HEAD."),
    "comment": Lazy(
        "machinery.comment.cli:comment", "Post or update the sticky PR report comment."
    ),
    "deploy": Lazy("machinery.deploy.cli:app", "GitOps: bump an overlay's image, promote."),
    "doctor": Lazy("machinery.doctor.cli:doctor", "Check every CI setting against the real thing."),
    "efficiency": Lazy(
        "machinery.efficiency.cli:efficiency", "Every stage's efficiency (formula (1)) and advice."
    ),
    "example-input": Lazy(
        "machinery.example_input:example_input", "A picture or JSON request to try the model."
    ),
    "image": Lazy("machinery.image.cli:app", "Build, push and describe the inference image."),
    "measure": Lazy(
        "machinery.efficiency.cli:measure", "Run a stage here, measured.", OFFLOAD_OPTIONS
    ),
    "offload": Lazy(
        "machinery.slurm.command:offload", "Run a stage's command on Slurm.", OFFLOAD_OPTIONS
    ),
    "registry": Lazy("machinery.registry.cli:app", "Model registry: tags and aliases."),
    "report": Lazy("machinery.report.cli:report", "Render the pipeline report."),
    "retrain": Lazy("machinery.retrain.cli:app", "Alert receiver; publish a retrain to staging."),
    "sweep": Lazy("machinery.sweep.cli:sweep", "Run a parameter grid as one Slurm job array."),
    "where": Lazy("machinery.where:where", "What the pipeline produced, what to try next."),
}


class LazyGroup(TyperGroup):
    """Lists commands from ``COMMANDS`` and imports one only when it is run."""

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        lazy = COMMANDS.get(cmd_name)
        return lazy.load(cmd_name) if lazy else None

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = [(name, COMMANDS[name].help) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="mlops",
    cls=LazyGroup,
    help="Template machinery: report, Slurm offload, model registry, PR comment, GitOps bump.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Keeps ``mlops`` a command group even while only one command is registered."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
