"""``python -m service.healthcheck``: the image's HEALTHCHECK, on the port the service listens on.

The port has one source for both: ``MLOPS_PORT`` (default 8000), read by ``python -m service``
as its ``--port`` default and here. Standard library only: it runs every 30 s in the container.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

PORT_ENV = "MLOPS_PORT"
HOST_ENV = "MLOPS_HOST"
DEFAULT_PORT = 8000


def configured_port(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"error: {PORT_ENV}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def main() -> None:
    url = f"http://127.0.0.1:{configured_port()}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (fixed http URL)
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
