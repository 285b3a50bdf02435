"""``make serve``: the service on the model the pipeline just trained, with embedded defaults.

Publishes ``models/`` into the local registry ``.local/registry`` as ``dev-<sha256[:12]>``
unless that tag exists, points the alias (default ``dev``) at it, and serves with auth on:
the token comes from ``SERVE_TOKEN`` or is generated and printed. One uvicorn worker.

An exported ``MLOPS_REGISTRY_URL`` (the shared S3 registry, say) is deliberately ignored:
publishing a dev model and moving an alias there is something to ask for by name, with
``--registry URL``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from machinery.errors import UserError, exits_cleanly
from machinery.hints import predict_hint
from machinery.modelcard import CARD_FILENAME, MODEL_FILENAME, read_card
from machinery.registry import DEFAULT_REGISTRY_URL, REGISTRY_URL_ENV, Registry
from service.settings import ENV_PREFIX, Settings

MODEL_DIR = Path("models")
METRICS_FILE = Path("eval/metrics.json")
TOKEN_ENV = "SERVE_TOKEN"


def publish_dev_model(settings: Settings, model_dir: Path = MODEL_DIR) -> str:
    """Publish the pipeline's model (idempotent) and point the alias at it; return the tag."""
    if not (model_dir / MODEL_FILENAME).is_file():
        raise UserError(f"{model_dir / MODEL_FILENAME}: not found; run `make run` first")
    card = read_card(model_dir / CARD_FILENAME)
    tag = f"dev-{card.onnx_sha256[:12]}"
    registry = Registry.from_url(settings.registry_url)
    registry.publish(tag, model_dir, metrics=_metrics())
    registry.move_alias(settings.model_alias, tag, by="make serve")
    return tag


def _metrics() -> dict[str, Any]:
    try:
        data = json.loads(METRICS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.dev", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY_URL,
        help=f"registry to publish into and serve from (default {DEFAULT_REGISTRY_URL};"
        f" {REGISTRY_URL_ENV} is not used)",
    )
    args = parser.parse_args(argv)

    ignored = os.environ.get(REGISTRY_URL_ENV)
    if ignored and ignored != args.registry:
        print(f"note: {REGISTRY_URL_ENV}={ignored} ignored; pass --registry to use it")
    os.environ[REGISTRY_URL_ENV] = args.registry  # what the served process reads
    settings = Settings()
    tag = publish_dev_model(settings)
    print(f"serving tag {tag} via alias '{settings.model_alias}' from {settings.registry_url}")
    if settings.auth_enabled and not (settings.admin_token_sha256 or settings.token_file):
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
        os.environ[f"{ENV_PREFIX}ADMIN_TOKEN_SHA256"] = hashlib.sha256(token.encode()).hexdigest()
        print(f"bearer token (scopes admin, predict): {token}")
        card = read_card(MODEL_DIR / CARD_FILENAME)
        print(predict_hint(card, f"http://{args.host}:{args.port}", token))
    sys.stdout.flush()

    from service.__main__ import main as serve

    serve(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
