"""A small threaded HTTP server with a route table, a request log and fault injection.

The Binance and Fear & Greed fakes are built on it. A route is a function
``handler(request) -> FakeResponse`` registered for a method and an exact
path; faults are checked before routing and can stand in for any response
(rate limits, HTML error pages, slow answers).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """Query and url-encoded body merged, as Binance reads signed POST/DELETE parameters."""
        params = dict(self.query)
        if self.body:
            params.update(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        return params


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> FakeResponse:
        return cls(status=status, body=payload, headers=dict(headers))

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/html; charset=utf-8"
        if self.body is None:
            return b"", self.content_type or "application/json"
        return json.dumps(self.body).encode("utf-8"), self.content_type or "application/json"


Handler = Callable[[FakeRequest], FakeResponse]


@dataclass
class Fault:
    """Stand-in response for matching requests.

    ``path`` None matches every path. ``skip`` lets that many matching requests
    through first; ``times`` is how many to spoil (None: all from then on).
    ``delay`` sleeps before answering (with ``response`` None the normal answer follows).
    """

    response: FakeResponse | None = None
    path: str | None = None
    times: int | None = 1
    skip: int = 0
    delay: float = 0.0
    hits: int = 0

    def claims(self, request: FakeRequest) -> bool:
        if self.path is not None and request.path != self.path:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


HTML_ERROR_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def html_error(
    status: int = 502, *, path: str | None = None, times: int | None = 1, skip: int = 0
) -> Fault:
    return Fault(
        FakeResponse(status=status, body=HTML_ERROR_PAGE), path=path, times=times, skip=skip
    )


def slow(seconds: float, *, path: str | None = None, times: int | None = 1) -> Fault:
    return Fault(None, path=path, times=times, delay=seconds)


class FakeHttpServer:
    """Threaded HTTP server on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1") -> None:
        # A fixed port lets a test stop the server and start it again where clients expect it.
        self.port = port
        self.host = host
        self.routes: dict[tuple[str, str], Handler] = {}
        self.faults: list[Fault] = []
        self.requests: list[FakeRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    # --- routes and faults ---

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add_route(method, path, handler)
            return handler

        return register

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def requests_to(self, path: str) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # --- lifecycle ---

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHttpServer:
        self._httpd = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            # Later starts reuse the port: clients keep their URL across a restart.
            self.port = self._httpd.server_address[1]
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
            # A stopped exchange is gone for kept-alive clients too, not only for new ones.
            with self._lock:
                open_connections, self._connections = self._connections, set()
            for connection in open_connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- dispatch ---

    def decorate(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        """Hook for headers every response carries (Binance's used weight)."""
        return response

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.claims(request)), None)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.response is not None:
                return self.decorate(request, fault.response)
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return self.decorate(request, self.not_found(request))
        return self.decorate(request, handler(request))

    def not_found(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(status=404, body="<html><body>404 Not Found</body></html>")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = FakeRequest(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers=dict(self.headers.items()),
                    body=self.rfile.read(length) if length else b"",
                )
                response = server.dispatch(request)
                body, content_type = response.encoded()
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            do_GET = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return RequestHandler
