"""A gthread worker that reads each whole request in its event loop, then hands it to a thread.

gunicorn's threaded worker hands a connection to a thread once its first byte arrives;
the thread then reads the request line, the headers and the body with blocking reads. A
client that sends a few bytes and then one more every few seconds (a "slowloris", #26)
holds that thread, and as many such clients as there are threads take the admin down. A
deadline on those reads only bounds how long: with more slow clients than threads, every
other request still waits for it.

Here a thread never waits on a client. The worker's event loop reads each request without
blocking, into a buffer (memory, then a temporary file past ``SPOOL_IN_MEMORY_BYTES``),
and only a *complete* request goes to the thread pool, where gunicorn parses and serves it
from that buffer. Completeness is decided by h11, a well-kept incremental HTTP/1.1 parser
(Content-Length, chunked bodies, pipelining), rather than by framing code of our own;
gunicorn remains the parser that serves the request. A request not complete within
``REQUEST_READ_SECONDS`` of its first byte is answered 408 and closed by the loop; one
announcing a body larger than the largest upload tradebot accepts is answered 413 at once.
Slow clients then cost a socket and a buffer each (up to gunicorn's ``worker_connections``
per worker), never a thread.

A thread never reads from the client's socket at all: it reads the buffer, and past its
end finds the client gone. So where h11 and gunicorn could read a framing differently, the
request fails at once rather than holding a thread; a request h11 refuses is answered by
the loop with h11's status and reason (400, 431, ...).

Behind the reverse proxy (README) the proxy buffers whole requests and none of this is
reached by real users; it bounds what reaches gunicorn directly.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import tempfile
import time
from functools import partial
from http import HTTPStatus
from typing import IO, Any

import h11
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

REQUEST_READ_SECONDS = float(os.environ.get("TRADEBOT_GUNICORN_READ_SECONDS", "10"))
# Bodies above this are spooled to a temporary file rather than held in memory: with
# worker_connections (1000) requests being read at once, at most 256 MiB per worker.
SPOOL_IN_MEMORY_BYTES = 256 * 1024
# The largest request the loop buffers: the largest model upload the registry accepts
# (TRADEBOT_MAX_UPLOAD_BYTES, read from the environment like the settings do) plus room
# for the form around it. Larger requests are refused before their body is read.
FORM_OVERHEAD_BYTES = 1024 * 1024
READ_SIZE = 64 * 1024
REASON_CHARS = 200
# How long, and how much, a closing connection is drained for (gunicorn's own figures).
LINGER_SECONDS = 2.0
LINGER_DRAIN_BYTES = 64 * 1024


def largest_request_bytes() -> int:
    upload = int(os.environ.get("TRADEBOT_MAX_UPLOAD_BYTES", str(200 * 1024 * 1024)))
    return upload + FORM_OVERHEAD_BYTES


def refusal(status: str, reason: str) -> bytes:
    """A whole one-line HTTP/1.1 answer that closes the connection.

    The reason may quote the client's bytes (h11's messages do, as a repr): it is cut short
    and sent as plain text that a browser may not sniff into anything else.
    """
    line = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
    body = (line + "\n").encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return "400 Bad Request"


TIMED_OUT = refusal(
    "408 Request Timeout", f"request not received within {REQUEST_READ_SECONDS:g} s"
)
TOO_LARGE = refusal(
    "413 Content Too Large",
    "request body larger than the largest upload tradebot accepts (TRADEBOT_MAX_UPLOAD_BYTES)",
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RequestBuffer:
    """The bytes of one request as they arrive, and whether they make a whole request.

    Only the raw bytes are kept, to be parsed again by gunicorn: h11's events are read and
    dropped. ``leftover`` is whatever arrived after the request ended (a pipelined request),
    which starts the next buffer.
    """

    def __init__(self, max_header_bytes: int) -> None:
        self._framing = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        # Closed by close(), or by the ClientSocket that serves it to a thread.
        self._bytes: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
        self.size = 0
        self.announced_body: int | None = None
        self.complete = False
        self.wants_continue = False
        self.leftover = b""
        self.refusal: bytes | None = None

    def feed(self, data: bytes) -> None:
        self._bytes.write(data)
        self.size += len(data)
        try:
            self._framing.receive_data(data)
            self._advance()
        except h11.RemoteProtocolError as error:
            self.refusal = refusal(
                status_line(error.error_status_hint), f"malformed request: {error}"
            )

    def _advance(self) -> None:
        while not self.complete:
            event = self._framing.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self.announced_body = content_length(event)
                self.wants_continue = self._framing.they_are_waiting_for_100_continue
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                trailing, _closed = self._framing.trailing_data
                self.leftover = bytes(trailing)

    def request_bytes(self) -> IO[bytes]:
        """The buffered request alone, from its first byte (without ``leftover``)."""
        self._bytes.truncate(self.size - len(self.leftover))
        self._bytes.seek(0)
        return self._bytes

    def close(self) -> None:
        self._bytes.close()


def content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


class ClientSocket:
    """A client's socket as a thread sees it: reads come from the buffered request only.

    Past the buffer's end the client is gone as far as gunicorn can tell: a thread never
    waits on a client, whatever gunicorn would have read next.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._request: IO[bytes] | None = None
        self.overran = False
        self.leftover = b""

    def load(self, request: IO[bytes]) -> None:
        self.release()
        self._request = request

    def release(self) -> None:
        if self._request is not None:
            self._request.close()
            self._request = None

    def recv(self, size: int, *_flags: int) -> bytes:
        data = self._request.read(size) if self._request is not None else b""
        if data:
            return data
        # NoMoreData: gunicorn treats it as a client gone (logged at debug, no traceback).
        self.overran = True
        raise NoMoreData(b"")

    def recv_into(self, buffer: Any, nbytes: int = 0, *flags: int) -> int:
        data = self.recv(nbytes or len(buffer), *flags)
        buffer[: len(data)] = data
        return len(data)

    @property
    def raw(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self.release()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class RequestBufferingWorker(ThreadWorker):
    """gunicorn -k tradebot.gunicorn_worker.RequestBufferingWorker"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections whose request is being read: their deadline and buffer.
        self.reading: dict[Any, tuple[float, RequestBuffer]] = {}
        # Connections being closed: their deadline and the bytes drained so far.
        self.lingering: dict[Any, tuple[float, int]] = {}
        cfg = self.cfg
        self.max_header_bytes = cfg.limit_request_line + cfg.limit_request_fields * (
            cfg.limit_request_field_size + 2
        )
        self.max_request_bytes = largest_request_bytes()

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl:
            raise RuntimeError(
                "RequestBufferingWorker reads requests before TLS could be unwrapped: "
                "terminate TLS at the reverse proxy, not in gunicorn"
            )

    # -- where gunicorn would hand a connection to a thread, read its request first ----

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, ClientSocket):
            conn.sock = ClientSocket(conn.sock)
        if getattr(conn, "request_ready", False):
            conn.request_ready = False
            super().enqueue_req(conn)
            return
        self.begin_reading(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        # A kept-alive connection's next request: read it here, like a new one.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.begin_reading(conn)

    def begin_reading(self, conn: Any) -> None:
        sock: ClientSocket = conn.sock
        sock.raw.setblocking(False)
        buffer = RequestBuffer(self.max_header_bytes)
        self.reading[conn] = (time.monotonic() + REQUEST_READ_SECONDS, buffer)
        if sock.leftover:  # a pipelined request that arrived with the previous one
            leftover, sock.leftover = sock.leftover, b""
            if self._take(conn, buffer, leftover):
                return
        self.poller.register(sock.raw, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: Any, _client: Any) -> None:
        _deadline, buffer = self.reading[conn]
        data = _recv_now(conn.sock.raw)
        if data is None:
            return
        if not data:  # the client went away before its request was whole
            self._stop_watching(conn)
            self.reading.pop(conn)[1].close()
            self.close_now(conn)
            return
        self._take(conn, buffer, data)

    def _take(self, conn: Any, buffer: RequestBuffer, data: bytes) -> bool:
        """Feed bytes; True once the connection has left the reading loop."""
        buffer.feed(data)
        if buffer.refusal is not None:
            self.refuse(conn, buffer.refusal)
            return True
        announced = buffer.announced_body or 0
        if max(buffer.size, announced) > self.max_request_bytes:
            self.refuse(conn, TOO_LARGE)
            return True
        if buffer.complete:
            self.dispatch(conn, buffer)
            return True
        if buffer.wants_continue:
            # The client waits for this before its body; gunicorn will send its own
            # later, and a client reads any number of 1xx answers (RFC 9110, 15.2).
            buffer.wants_continue = False
            _send_now(conn.sock.raw, CONTINUE)
        return False

    def dispatch(self, conn: Any, buffer: RequestBuffer) -> None:
        self._stop_watching(conn)
        self.reading.pop(conn)
        conn.sock.leftover = buffer.leftover
        conn.sock.load(buffer.request_bytes())
        conn.request_ready = True
        conn.data_ready = True  # gunicorn's own wait for a first byte is already done
        self.enqueue_req(conn)

    def refuse(self, conn: Any, answer: bytes) -> None:
        self._stop_watching(conn)
        self.reading.pop(conn)[1].close()
        _send_now(conn.sock.raw, answer)
        self.linger(conn)

    # -- after a thread served a request ----------------------------------------------

    def finish_request(self, conn: Any, fs: Any) -> None:
        sock: ClientSocket = conn.sock
        sock.release()
        kept_alive = _kept_alive(fs)
        if sock.overran:  # gunicorn wanted more than the request h11 saw: nothing to keep
            self.close_now(conn)
        elif kept_alive and sock.leftover and self.alive:
            self.begin_reading(conn)  # a pipelined request is already here
        elif kept_alive:
            super().finish_request(conn, fs)  # back to gunicorn's keep-alive poller
        else:
            self.linger(conn)

    # -- closing without blocking the loop --------------------------------------------

    def linger(self, conn: Any) -> None:
        """Close after the client has read our answer (RFC 9112, 9.6), from the loop.

        gunicorn's graceful close drains the client for up to 2 s with a blocking read on
        this loop's thread, one connection at a time; a crowd of clients that never close
        would make the worker deaf for minutes. Here the drain is one more poller event.
        """
        raw = conn.sock.raw
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now(conn)
            return
        raw.setblocking(False)
        self.lingering[conn] = (time.monotonic() + LINGER_SECONDS, 0)
        self.poller.register(raw, selectors.EVENT_READ, partial(self.on_linger_bytes, conn))

    def on_linger_bytes(self, conn: Any, _client: Any) -> None:
        data = _recv_now(conn.sock.raw)
        if data is None:
            return
        deadline, drained = self.lingering[conn]
        drained += len(data)
        if not data or drained >= LINGER_DRAIN_BYTES:
            self.end_linger(conn)
        else:
            self.lingering[conn] = (deadline, drained)

    def end_linger(self, conn: Any) -> None:
        self.lingering.pop(conn)
        self._stop_watching(conn)
        self.close_now(conn)

    def _stop_watching(self, conn: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock.raw)

    def close_now(self, conn: Any) -> None:
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            conn.sock.close()

    def murder_pending(self) -> None:
        # gunicorn's loop calls this about once a second: whatever is past its deadline goes.
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, (deadline, _) in self.reading.items() if deadline <= now]:
            self.refuse(conn, TIMED_OUT)
        for conn in [c for c, (deadline, _) in self.lingering.items() if deadline <= now]:
            self.end_linger(conn)


def _recv_now(sock: socket.socket) -> bytes | None:
    """What a non-blocking read gives now: bytes, b"" when the client is gone, None if none."""
    try:
        return sock.recv(READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _send_now(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.send(data)  # non-blocking: a client that does not read gets what fits


def _kept_alive(fs: Any) -> bool:
    if fs.cancelled() or fs.exception() is not None:
        return False
    return bool(fs.result())
