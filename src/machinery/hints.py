"""The first request to try against a served model, worded after its card.

An image model (the card has ``preprocessing``) takes an uploaded picture; a tabular model
(``preprocessing: null``) takes JSON rows only, so its hint never shows an image upload.
``service/dev.py`` (``make serve``) prints this.
"""

from __future__ import annotations

import json

from machinery.modelcard import ModelCard

EXAMPLE_IMAGE = ".local/example.png"
# Past this many features a literal row of zeros no longer fits a terminal line.
MAX_LITERAL_FEATURES = 16


def predict_hint(card: ModelCard, base_url: str, token: str | None = None) -> str:
    """Shell lines that send one valid request to ``base_url``/predict."""
    auth = f"-H 'Authorization: Bearer {token}' " if token else ""
    url = f"{base_url.rstrip('/')}/predict"
    if card.preprocessing is not None:
        return (
            f"  make example-image    # writes {EXAMPLE_IMAGE}: dark ink on a light background\n"
            f"  curl {auth}-F file=@{EXAMPLE_IMAGE} {url}"
        )
    n = card.n_features
    if n <= MAX_LITERAL_FEATURES:
        body = "'" + json.dumps({"instances": [[0.0] * n]}) + "'"
    else:
        row = f'$(python3 -c \'print(",".join(["0.0"] * {n}))\')'
        body = f'"{{\\"instances\\": [[{row}]]}}"'
    return (
        f"  # {card.name} takes JSON rows of {n} features (input `{card.input.name}`), no images\n"
        f"  curl {auth}-H 'Content-Type: application/json' -d {body} {url}"
    )
