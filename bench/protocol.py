"""What the header limit costs per request: uvicorn's httptools protocol against the service's
``BoundedHeadersProtocol``, both fed the request ``make bench-service`` sends to ``/predict``
(five headers, a bearer token, a JSON row) over a transport that only counts writes, with a
trivial ASGI app. No sockets and no kernel: the difference is the protocol's own Python work.
Interleaved rounds, median CPU µs per request. Usage::

    .venv/bin/python -m bench.protocol
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.http_protocol import BoundedHeadersProtocol

BODY = b'{"instances": [[1.0, 2.0, 3.0, 4.0]]}'
REQUEST = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer bench-0123456789abcdef01234567\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


class CountingTransport:
    def __init__(self) -> None:
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_round(protocol_class: type[HttpToolsProtocol], requests: int) -> float:
    config = Config(app, http=protocol_class, access_log=False, log_level="warning")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = CountingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    started = time.process_time()
    for _ in range(requests):
        before = transport.writes
        protocol.data_received(REQUEST)
        while transport.writes < before + 2:  # the head and the body: the request is answered
            await asyncio.sleep(0)
    assert not transport.closed, "the request was refused"
    return (time.process_time() - started) / requests * 1e6


async def main_async(args: argparse.Namespace) -> None:
    plans: dict[str, type[HttpToolsProtocol]] = {
        "httptools (uvicorn's)": HttpToolsProtocol,
        "with the header limit": BoundedHeadersProtocol.with_limit(16_384),
    }
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(args.rounds):
        for name, protocol_class in plans.items():
            times[name].append(await one_round(protocol_class, args.n))
    for name, values in times.items():
        print(
            f"{name:24} {statistics.median(values):6.2f} µs CPU/request"
            f" [{min(values):.2f}–{max(values):.2f}] over {args.rounds} rounds of {args.n}"
        )
    stock, bounded = (statistics.median(v) for v in times.values())
    print(f"the header limit costs {bounded - stock:.2f} µs a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=9)
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
