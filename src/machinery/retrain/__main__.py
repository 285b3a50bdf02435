"""``python -m machinery.retrain``: the receiver under uvicorn, settings from ``MLOPS_RETRAIN_*``
(the Deployment's command: the inference image has no typer, so no ``mlops`` CLI)."""

from __future__ import annotations

import sys

from machinery.errors import UserError
from machinery.retrain.serve import serve

if __name__ == "__main__":
    try:
        serve()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
