"""Build the receiver from the environment and run it under uvicorn (one worker: the cool-down
lives in this process)."""

from __future__ import annotations

import logging

from machinery.retrain.app import Receiver, create_app
from machinery.retrain.forge import make_trigger
from machinery.retrain.settings import load_settings


def serve() -> None:
    import uvicorn

    settings = load_settings()
    # Both secrets are read here: an unreadable Secret file fails now, not at the first alert.
    receiver = Receiver(settings, make_trigger(settings))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(receiver),
        host=settings.host,
        port=settings.port,
        workers=1,
        access_log=False,
        log_level="info",
    )
