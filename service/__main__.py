"""``python -m service``: one uvicorn worker with uvloop and httptools (the image's command),
with the request-header limit (``MLOPS_MAX_HEADER_BYTES``) enforced by the protocol."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn
from pydantic import ValidationError

from service.auth import AuthConfigError, refuse_open_exposure
from service.healthcheck import HOST_ENV, PORT_ENV, configured_port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    # Defaults from the environment, so the image's HEALTHCHECK probes the port in use.
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, "0.0.0.0"))
    parser.add_argument("--port", type=int, default=configured_port(), help=f"or {PORT_ENV}")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    from service.http_protocol import BoundedHeadersProtocol
    from service.main import create_app
    from service.settings import Settings

    try:
        settings = Settings()
        level = settings.log_level.upper()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: setting {first['loc'][0]}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        refuse_open_exposure(settings, args.host)
        app = create_app()
    except AuthConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=BoundedHeadersProtocol.with_limit(
            settings.max_header_bytes, app.state.container.metrics().observe_unparsed
        ),
        access_log=args.access_log,
        # No "server: uvicorn" banner: it tells a scanner what to try, and every answer writes
        # one header less.
        server_header=False,
        workers=1,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
