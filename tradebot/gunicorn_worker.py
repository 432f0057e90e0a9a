"""A gthread worker whose reads from a client have a deadline per request.

gunicorn's threaded worker hands a new connection to a thread once its first byte
arrives; the thread then reads the request line and headers with blocking reads and no
overall limit. A client that sends a few bytes and then one more every few seconds keeps
that thread for as long as it likes, and a few dozen such clients hold every thread: the
admin stops answering (the "slowloris" attack, #26). Here every read from the client's
socket during one request must finish by a deadline (``REQUEST_READ_SECONDS`` after the
request's first byte): a slow client loses its connection, and its thread is free again.

Behind the reverse proxy (README) the proxy buffers whole requests and this deadline is
never reached by real users; it bounds what reaches gunicorn directly.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

REQUEST_READ_SECONDS = float(os.environ.get("TRADEBOT_GUNICORN_READ_SECONDS", "10"))


class DeadlineSocket:
    """A client socket whose reads share one deadline (``deadline``, monotonic time)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None
        self.expired = False

    def _bound(self) -> None:
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self._expire()
        self._sock.settimeout(remaining)

    def _expire(self) -> None:
        # NoMoreData: gunicorn treats it as a client gone (logged at debug, no traceback).
        self.expired = True
        raise NoMoreData(b"")

    def recv(self, size: int, *flags: int) -> bytes:
        self._bound()
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            self._expire()
            raise  # not reached: _expire raises

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._bound()
        try:
            return self._sock.recv_into(buffer, *args)
        except TimeoutError:
            self._expire()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    """gunicorn -k tradebot.gunicorn_worker.DeadlineThreadWorker"""

    def enqueue_req(self, conn: Any) -> None:
        # The clock starts when the connection is queued for a thread (new, back from
        # keep-alive, or readable after waiting), not when a thread is free: slow clients
        # queued behind other slow clients expire too, instead of waiting their turn.
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock)
        conn.sock.deadline = time.monotonic() + REQUEST_READ_SECONDS
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        # A client dropped for slowness is closed at once: gunicorn's graceful close
        # lingers up to 2 s reading from it, on the main thread, one connection at a time,
        # which a crowd of trickling clients turns into minutes of a deaf worker.
        if isinstance(conn.sock, DeadlineSocket) and conn.sock.expired:
            self.nr_conns -= 1
            conn.close()
            return
        super().finish_request(conn, fs)

    def handle(self, conn: Any) -> Any:
        try:
            return super().handle(conn)
        finally:
            if isinstance(conn.sock, DeadlineSocket):
                conn.sock.deadline = None  # a kept-alive connection waits in the poller
