"""The shipped gunicorn configuration holds slow clients (#26, finding 5).

Real gunicorn on loopback with tradebot/gunicorn_conf.py. Three times as many connections
as the workers have threads send the start of a request and then trickle one byte a
second (a "slowloris"): in the headers, in a Content-Length body or in a chunked body.
The admin's login page must answer while every one of them is still connected (none holds
a thread), and gunicorn must drop each by its read deadline. Bounded: the slow clients
stop themselves after SLOW_FOR seconds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.support.gunicorn import shipped_gunicorn
from tradebot import gunicorn_conf
from tradebot.gunicorn_worker import LINGER_SECONDS, REQUEST_READ_SECONDS

pytestmark = [pytest.mark.slow]

# More than every thread of every worker, several times over: a thread per slow client
# would leave none for the admin.
SLOW_CLIENTS = 3 * gunicorn_conf.workers * gunicorn_conf.threads
SLOW_FOR = REQUEST_READ_SECONDS + 15  # the trickle outlives the deadline, then stops


@contextlib.contextmanager
def serving(tmp_path: Path, workers: int) -> Iterator[str]:
    """The shipped gunicorn configuration serving the admin, with this many workers."""
    env = {
        "ENVIRONMENT": "test",
        "TRADEBOT_VAR_DIR": str(tmp_path / "var"),
        "TRADEBOT_GUNICORN_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": "",  # the admin's login page, on the default SQLite
    }
    log = tmp_path / "gunicorn.log"
    with shipped_gunicorn("tradebot.wsgi:application", log, env) as port:
        base = f"http://127.0.0.1:{port}"
        for _ in range(workers * 2):  # every worker has booted Django
            assert get(base, timeout=60) == 200
        yield base


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path, gunicorn_conf.workers) as base:
        yield base


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[str]:
    # One worker, so every connection meets the same event loop: with several, whether
    # the admin's lands on a loop the closers deafened would be chance.
    with serving(tmp_path, 1) as base:
        yield base


def get(base: str, *, timeout: float) -> int:
    with urllib.request.urlopen(f"{base}/admin/login/", timeout=timeout) as response:
        return response.status


SLOW_HEADER = b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
# Complete headers, then a body that trickles: the other members of the class.
SLOW_BODY = (
    b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\na="
)
SLOW_CHUNKED_BODY = (
    b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"186a0\r\na="
)


def slow_client(port: int, start: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(start)
    return sock


def trickle(socks: list[socket.socket], closed_at: dict[int, float], stop: threading.Event) -> None:
    """One byte a second on every open socket, noting when the server dropped each."""
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < SLOW_FOR:
        for index, sock in enumerate(socks):
            if index in closed_at:
                continue
            try:
                sock.sendall(b"a")
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.recv(4096)  # an error answer, or b"" when closed: dropped either way
                    closed_at[index] = time.monotonic() - started
                sock.setblocking(True)
            except OSError:
                closed_at[index] = time.monotonic() - started
        stop.wait(1.0)


@pytest.mark.parametrize(
    "start", [SLOW_HEADER, SLOW_BODY, SLOW_CHUNKED_BODY], ids=["header", "body", "chunked"]
)
def test_slow_clients_never_hold_a_thread(gunicorn: str, start: bytes) -> None:
    port = int(gunicorn.rsplit(":", 1)[1])
    socks = [slow_client(port, start) for _ in range(SLOW_CLIENTS)]
    closed_at: dict[int, float] = {}
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(socks, closed_at, stop), daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        assert len(closed_at) < SLOW_CLIENTS, "the slow clients never got going"
        started = time.monotonic()
        status = get(gunicorn, timeout=REQUEST_READ_SECONDS + 5)
        waited = time.monotonic() - started
        still_open = SLOW_CLIENTS - len(closed_at)
        print(f"admin answered {status} in {waited:.2f} s with {still_open} slow clients open")
        assert status == 200
        # Served while every slow client was still connected: none of them held a thread.
        assert still_open == SLOW_CLIENTS
        thread.join(timeout=SLOW_FOR + 5)
        # Every slow client was dropped by the server, by its read deadline (plus the
        # trickle's one-second step and slack), not left to hold a thread.
        assert len(closed_at) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(closed_at)} never dropped"
        latest = max(closed_at.values())
        print(f"slowest drop after {latest:.1f} s (deadline {REQUEST_READ_SECONDS} s)")
        assert latest < REQUEST_READ_SECONDS + 10
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in socks:
            sock.close()


def test_clients_that_never_close_do_not_deafen_the_worker(one_worker: str) -> None:
    """Whole requests with "Connection: close", answered, and then never read nor closed.

    Closing such a connection drains it for up to 2 s (RFC 9112, 9.6). gunicorn does that
    with a blocking read on the worker's event loop, one connection at a time; here the
    loop waits for them all at once, so the admin is answered before the first is closed.
    (gunicorn's own close made a worker deaf for 80 s behind 40 such clients.)
    """
    port = int(one_worker.rsplit(":", 1)[1])
    request = b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    socks = [slow_client(port, request) for _ in range(SLOW_CLIENTS)]
    try:
        time.sleep(0.5)  # their answers are written and the server is draining them
        started = time.monotonic()
        status = get(one_worker, timeout=60)
        waited = time.monotonic() - started
        print(f"admin answered {status} in {waited:.2f} s beside {SLOW_CLIENTS} idle closers")
        assert status == 200
        # One blocking drain alone lasts LINGER_SECONDS; a queue of them would be minutes.
        assert waited < LINGER_SECONDS * 2
    finally:
        for sock in socks:
            sock.close()


def test_the_shipped_configuration_limits_request_lines_and_headers() -> None:
    assert gunicorn_conf.worker_class.endswith("RequestBufferingWorker")
    assert gunicorn_conf.limit_request_line <= 4094
    assert gunicorn_conf.limit_request_fields <= 100
    assert gunicorn_conf.limit_request_field_size <= 8190
    # One PostgreSQL connection per thread that served a request (CONN_MAX_AGE).
    assert gunicorn_conf.threads * gunicorn_conf.workers <= 64
    unit = (PROJECT_ROOT / "deployment" / "systemd" / "tradebot-web.service").read_text()
    assert "-c python:tradebot.gunicorn_conf" in unit
