"""``mlops retrain``: the alert receiver and the retrain publish step (docs/retraining.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import exits_cleanly

app = typer.Typer(no_args_is_help=True, help="Alert-driven retraining (docs/retraining.md).")


@app.command()
@exits_cleanly
def receiver() -> None:
    """Serve Alertmanager's webhook and start a pipeline run per alert group (MLOPS_RETRAIN_*)."""
    from machinery.retrain.serve import serve

    serve()


@app.command()
@exits_cleanly
def publish(
    model_dir: Annotated[Path, typer.Option(help="Holds model.onnx + model_card.json.")] = Path(
        "models"
    ),
    metrics: Annotated[Path, typer.Option(help="The evaluate stage's metrics.")] = Path(
        "eval/metrics.json"
    ),
    report: Annotated[Path, typer.Option(help="Where the summary goes.")] = Path(
        "reports/retrain.md"
    ),
) -> None:
    """Retrain run: new tag on HEAD (message = the reason), publish, move staging (never prod)."""
    from machinery.registry.registry import Registry
    from machinery.retrain.publish import Reason, publish, summary, write_summary

    env = dict(os.environ)
    reason = Reason.from_env(env)
    outcome = publish(reason, Registry.from_env(), model_dir=model_dir, metrics=metrics, env=env)
    text = summary(reason, outcome)
    write_summary(text, report, env)
    typer.echo(text)
