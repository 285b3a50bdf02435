"""A webhook receiver on 127.0.0.1: the end of the Alertmanager route in the live tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ports import free_port


@dataclass
class Notification:
    received: float  # time.monotonic() at arrival
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """Records every Alertmanager webhook POST (its JSON body) with the time it arrived."""

    port: int = field(default_factory=free_port)
    notifications: list[Notification] = field(default_factory=list)

    def start(self) -> None:
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                received.append(Notification(time.monotonic(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def first(self, alertname: str, status: str, after: float = 0.0) -> Notification | None:
        for note in list(self.notifications):
            if note.received < after:
                continue
            for alert in note.body.get("alerts", []):
                if alert["labels"].get("alertname") == alertname and alert["status"] == status:
                    return note
        return None
