"""``mlops registry ...``: publish from the pipeline outputs, list tags, show and move aliases.

Human-readable tables by default, ``--json`` for machines. Registry failures are one line on
stderr and a non-zero exit (3 when the registry is unreachable).
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from machinery.errors import UserError, exits_cleanly
from machinery.modelcard import ModelCard, ValueOutput, is_dirty, short_commit
from machinery.registry.records import AliasRecord, ModelMeta
from machinery.registry.registry import (
    DEFAULT_REGISTRY_URL,
    REGISTRY_URL_ENV,
    Registry,
    metrics_from_file,
)
from machinery.registry.tables import local_time, short_metrics, table
from machinery.registry.when import parse_when

app = typer.Typer(
    name="registry",
    help="Model registry: immutable experiment tags and movable aliases (staging, prod).",
    no_args_is_help=True,
)
alias_app = typer.Typer(name="alias", help="Show, move and audit aliases.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")

RegistryUrl = Annotated[
    str,
    typer.Option(
        "--registry",
        envvar=REGISTRY_URL_ENV,
        help="s3://BUCKET/PREFIX (credentials from AWS_*) or a directory.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]

_BY_ENV = ("GITLAB_USER_LOGIN", "GITHUB_ACTOR", "USER")


@app.command()
@exits_cleanly
def publish(
    tag: Annotated[
        str | None, typer.Option(help="Experiment tag (default: the git tag on HEAD).")
    ] = None,
    model_dir: Annotated[Path, typer.Option(help="Holds model.onnx + model_card.json.")] = Path(
        "models"
    ),
    metrics: Annotated[Path, typer.Option(help="The evaluate stage's metrics.")] = Path(
        "eval/metrics.json"
    ),
    commit: Annotated[
        str | None, typer.Option(help="Commit to record (default: the tag's commit).")
    ] = None,
    move_alias: Annotated[
        str | None, typer.Option(help="Then point this alias at the tag (CI: staging).")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Who moves the alias (default: CI user or $USER).")
    ] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """Publish the trained model under an immutable tag (same bytes again: no change)."""
    tag = tag or _head_tag()
    commit = commit or _git_commit_of(tag)
    values = metrics_from_file(metrics)
    reg = Registry.from_url(registry)
    meta = reg.publish(tag, model_dir, metrics=values, commit=commit)
    record = reg.move_alias(move_alias, tag, by=by or _who()) if move_alias else None
    if as_json:
        _print_json(meta.model_dump(mode="json"))
        return
    typer.echo(
        f"published {meta.tag} to {reg.location} (sha256 {meta.sha256[:12]}…, "
        f"commit {_commit(meta)}, created {local_time(meta.created)})"
    )
    if is_dirty(meta.card.code_commit):
        typer.echo(
            f"warning: {meta.tag} was trained from uncommitted changes "
            f"({short_commit(meta.card.code_commit)}): it cannot be rebuilt from git",
            err=True,
        )
    if record is not None:
        typer.echo(_describe_move(record))


def _commit(meta: ModelMeta) -> str:
    """The tag's commit, short, with ``+dirty`` when the model came from uncommitted changes."""
    dirty = is_dirty(meta.card.code_commit) and not is_dirty(meta.commit)
    return short_commit(meta.commit) + ("+dirty" if dirty else "")


@app.command("list")
@exits_cleanly
def list_tags(registry: RegistryUrl = DEFAULT_REGISTRY_URL, as_json: AsJson = False) -> None:
    """Published tags, newest first, with the aliases pointing at each."""
    reg = Registry.from_url(registry)
    listing = reg.listing()
    metas = listing.models
    for bad in listing.invalid:
        typer.echo(f"warning: tag {bad.tag} skipped: {bad.error}", err=True)
    pointing: dict[str, list[str]] = {}
    for record in reg.aliases():
        pointing.setdefault(record.tag, []).append(record.alias)
    if as_json:
        _print_json(
            [{**m.model_dump(mode="json"), "aliases": pointing.get(m.tag, [])} for m in metas]
        )
        return
    if not metas:
        typer.echo(f"no tags published in {reg.location}")
        return
    rows = [
        [
            m.tag,
            ",".join(pointing.get(m.tag, [])),
            local_time(m.created),
            _commit(m),
            m.card.task,
            m.card.estimator,
            short_metrics(m.metrics),
        ]
        for m in metas
    ]
    headers = ["TAG", "ALIASES", "CREATED", "COMMIT", "TASK", "ESTIMATOR", "METRICS"]
    typer.echo(table(headers, rows))


@app.command()
@exits_cleanly
def show(
    tag: Annotated[str, typer.Argument(help="The tag to describe.")],
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """Everything recorded for one tag."""
    meta = Registry.from_url(registry).meta(tag)
    if as_json:
        _print_json(meta.model_dump(mode="json"))
        return
    typer.echo(_describe(meta))


@alias_app.command("show")
@exits_cleanly
def alias_show(
    name: Annotated[str, typer.Argument(help="Alias, e.g. staging or prod.")],
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """The tag an alias points at now."""
    record = Registry.from_url(registry).alias(name)
    if as_json:
        _print_json(record.model_dump(mode="json"))
        return
    typer.echo(_describe_move(record))


@alias_app.command("move")
@exits_cleanly
def alias_move(
    name: Annotated[str, typer.Argument(help="Alias to move, e.g. prod.")],
    tag: Annotated[str, typer.Argument(help="Published tag it should point at.")],
    by: Annotated[
        str | None, typer.Option(help="Who moves it (default: CI user or $USER).")
    ] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """Point an alias at a tag; the move is appended to the alias's history."""
    record = Registry.from_url(registry).move_alias(name, tag, by=by or _who())
    if as_json:
        _print_json(record.model_dump(mode="json"))
        return
    typer.echo(_describe_move(record))


@alias_app.command("history")
@exits_cleanly
def alias_history(
    name: Annotated[str, typer.Argument(help="Alias, e.g. prod.")],
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """Every move of an alias, oldest first."""
    reg = Registry.from_url(registry)
    history = reg.alias_history(name)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in history])
        return
    if not history:
        raise UserError(f"alias {name} has never been moved in {reg.location}")
    rows = [[local_time(r.moved_at), r.moved_by, r.previous_tag or "-", r.tag] for r in history]
    typer.echo(table(["MOVED AT", "BY", "FROM", "TO"], rows))


@app.command("served-at")
@exits_cleanly
def served_at(
    name: Annotated[str, typer.Argument(help="Alias, e.g. prod.")],
    when: Annotated[
        str, typer.Argument(help="'yesterday 14:03', '14:03', 2026-11-22T14:03[+01:00], 'now'.")
    ],
    registry: RegistryUrl = DEFAULT_REGISTRY_URL,
    as_json: AsJson = False,
) -> None:
    """Which tag an alias pointed at, at a given time."""
    moment = parse_when(when)
    reg = Registry.from_url(registry)
    tag = reg.served_at(name, moment)
    if as_json:
        _print_json({"alias": name, "when": moment.isoformat(), "tag": tag})
        return
    if tag is None:
        first = reg.alias_history(name)[0]
        raise UserError(
            f"alias {name} pointed at no tag at {local_time(moment)}: its first move was at "
            f"{local_time(first.moved_at)}"
        )
    typer.echo(f"{name} → {tag} at {local_time(moment)}")


def _describe(meta: ModelMeta) -> str:
    rows = [
        ["tag", meta.tag],
        ["commit", meta.commit],
        ["created", local_time(meta.created)],
        ["sha256", meta.sha256],
        ["data version", meta.data_version],
        ["task", meta.card.task],
        ["estimator", meta.card.estimator],
        ["input", f"{meta.card.input.name} {meta.card.input.shape} {meta.card.input.dtype}"],
        _outputs(meta.card),
        *[[f"metric {k}", json.dumps(v)] for k, v in meta.metrics.items()],
        *[[f"param {k}", json.dumps(v)] for k, v in meta.params.items()],
    ]
    return table(["FIELD", "VALUE"], rows)


def _outputs(card: ModelCard) -> list[str]:
    """A classifier's labels, or a regressor's value output (name, shape, dtype)."""
    if isinstance(card.output, ValueOutput):
        return ["output", f"{card.output.name} {card.output.shape} {card.output.dtype}"]
    return ["labels", ",".join(card.labels)]


def _describe_move(record: AliasRecord) -> str:
    was = f", was {record.previous_tag}" if record.previous_tag else ""
    return (
        f"{record.alias} → {record.tag} (moved {local_time(record.moved_at)} "
        f"by {record.moved_by}{was})"
    )


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _who() -> str:
    for name in _BY_ENV:
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _head_tag() -> str:
    tag = _git("describe", "--tags", "--exact-match", "HEAD")
    if tag is None:
        raise UserError(
            "HEAD has no git tag: pass --tag TAG, or tag the commit first (git tag v1 && "
            "git push origin v1)"
        )
    return tag


def _git_commit_of(tag: str) -> str | None:
    """The commit a git tag names; ``None`` (the card's commit is used) when it is no git tag."""
    return _git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
