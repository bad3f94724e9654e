"""A real local HTTP server that answers like Slack and PagerDuty, and records every request.

Unscripted, it answers like the real services: an incoming webhook says
``200 ok``; the Web API's ``chat.postMessage`` returns a fresh ``ts`` and
``chat.update`` echoes the message it edited; the Events API v2 says ``202``.
``script()`` queues other answers (429 with Retry-After, 500, 404 no_service,
a slow answer) for the next requests, and ``default`` changes the fallback.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WEBHOOK_PATH = "/services/T0000/B0000/cbmtest"
API_PATH = "/api/"
PAGERDUTY_PATH = "/v2/enqueue"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@dataclass(frozen=True)
class Reply:
    """One scripted answer (``body`` None: answer like the real service would)."""

    status: int = 200
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


OK = Reply(200, "ok")
SERVER_ERROR = Reply(500, "internal_error")
NO_SERVICE = Reply(404, "no_service")


def rate_limited(retry_after: float = 1) -> Reply:
    return Reply(429, "rate_limited", {"Retry-After": f"{retry_after:g}"})


@dataclass
class Request:
    """One request as received, with the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int | None = None  # None while the answer is still pending
    answer: Any = None  # the body answered (parsed when it was JSON)
    lost: bool = False  # the client was gone before the answer reached it

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.lost


class Receiver:
    """Serve on 127.0.0.1 on a free port, in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.default: Reply | None = None
        self._script: deque[tuple[str, Reply]] = deque()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def pagerduty_url(self) -> str:
        return self.url + PAGERDUTY_PATH

    def script(self, *replies: Reply, path: str = "") -> None:
        """Answer the next requests whose path ends with ``path`` with ``replies``, in order."""
        with self._lock:
            self._script.extend((path, r) for r in replies)

    def on(self, path: str) -> list[Request]:
        """Return the requests whose path ends with ``path``, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path)]

    def delivered(self, path: str) -> list[Request]:
        """Return the requests to ``path`` that were answered with success."""
        return [r for r in self.on(path) if r.ok]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        request = Request(
            http.command,
            http.path,
            dict(http.headers.items()),
            http.rfile.read(length),
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
            reply = self._next_reply(http.path)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        status, body = reply.status, reply.body
        if body is None:
            status, body = self._natural(http.path, request)
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        # Recorded before the answer goes out: a client that has its answer must
        # find it here.
        with self._lock:
            request.status, request.answer = status, body
        try:
            http.send_response(status)
            http.send_header(
                "Content-Type",
                "text/plain" if isinstance(body, str) else "application/json; charset=utf-8",
            )
            for name, value in reply.headers.items():
                http.send_header(name, value)
            http.send_header("Content-Length", str(len(raw)))
            http.end_headers()
            http.wfile.write(raw)
        except OSError:  # the client went away (e.g. it was killed)
            with self._lock:
                request.lost = True

    def _next_reply(self, path: str) -> Reply:
        for i, (suffix, reply) in enumerate(self._script):
            if path.endswith(suffix):
                del self._script[i]
                return reply
        return self.default or Reply(body=None)

    def _natural(self, path: str, request: Request) -> tuple[int, str | dict[str, Any]]:
        if path.endswith("chat.postMessage"):
            doc = request.json()
            n = next(self._ts)
            return 200, {
                "ok": True,
                "channel": doc.get("channel"),
                "ts": f"{1700000000 + n}.{n:06d}",
                "message": {"text": doc.get("text")},
            }
        if path.endswith("chat.update"):
            doc = request.json()
            return 200, {
                "ok": True,
                "channel": doc.get("channel"),
                "ts": doc.get("ts"),
                "text": doc.get("text"),
            }
        if path.endswith(PAGERDUTY_PATH):
            return 202, {
                "status": "success",
                "message": "Event processed",
                "dedup_key": request.json().get("dedup_key"),
            }
        return 200, "ok"
