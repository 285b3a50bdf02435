"""``make example-image`` (``mlops example-input``): an input to try the served model with,
worded after its card.

An image model (the card has ``preprocessing``) gets a picture from the example's own writer
(``--writer``, the template's is ``python -m example.sample``): only the example knows what its
pictures look like. A tabular model takes no images: it gets a JSON request to paste, one row of
the card's width, whether or not the writer still exists (a fork may have deleted it).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import UserError, exits_cleanly
from machinery.modelcard import CARD_FILENAME, ModelCard, read_card

CARD = Path("models") / CARD_FILENAME
DEFAULT_URL = "http://127.0.0.1:8000"


def example_row(card: ModelCard) -> list[float]:
    """One row of the card's width: each feature's training median when the card carries
    per-feature statistics (the middle decile edge), else zeros."""
    n = card.n_features
    bins = (card.reference.feature_bins if card.reference else None) or []
    row: list[float] = []
    for i in range(n):
        edges = bins[i] if i < len(bins) else []
        row.append(round(float(edges[len(edges) // 2]), 6) if edges else 0.0)
    return row


def json_request(card: ModelCard, url: str = DEFAULT_URL) -> str:
    """What a tabular model's user pastes: the request body and a curl line sending it."""
    body = json.dumps({"instances": [example_row(card)]})
    return "\n".join(
        [
            f"{card.name} takes no images: JSON rows of {card.n_features} features"
            f" (input `{card.input.name}`). An example request:",
            body,
            f"curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json'"
            f" -d '{body}' {url.rstrip('/')}/predict",
        ]
    )


def _write_picture(writer: str, out: Path, card: ModelCard | None) -> None:
    argv = [*shlex.split(writer), str(out)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except OSError as exc:
        raise UserError(f"`{writer}` cannot run ({exc.strerror})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        what = (
            f"this model takes {card.preprocessing.width}×{card.preprocessing.height} pictures"
            if card is not None and card.preprocessing is not None
            else "no model card yet (run `make run` first)"
        )
        raise UserError(f"{what}, and `{writer}` wrote none: {last}")
    typer.echo(proc.stdout.rstrip("\n"))


def _card_or_none(path: Path) -> ModelCard | None:
    return read_card(path) if path.is_file() else None


@exits_cleanly
def example_input(
    out: Annotated[Path, typer.Option(help="Where an image model's picture goes.")] = Path(
        ".local/example.png"
    ),
    writer: Annotated[
        str,
        typer.Option(help="The example's picture writer, given the path (an image model's only)."),
    ] = "python -m example.sample",
    url: Annotated[str, typer.Option(help="The service, for the curl line.")] = DEFAULT_URL,
) -> None:
    """Write a picture for an image model, or print a JSON request for a tabular one."""
    card = _card_or_none(CARD)
    if card is not None and card.preprocessing is None:
        typer.echo(json_request(card, url))
        return
    # An image model, or no card yet: the example's writer knows its pictures.
    _write_picture(writer, out, card)
