"""The shipped gunicorn configuration holds slow clients (#26, finding 5).

Real gunicorn on loopback with tradebot/gunicorn_conf.py; 60 connections send a request
line and then trickle one header byte a second (a "slowloris"). The admin's login page
must still answer while they are connected, and gunicorn must drop each of them by its
read deadline. Bounded: the slow clients stop themselves after SLOW_FOR seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.stack import free_port, wait_for_port
from tradebot import gunicorn_conf
from tradebot.gunicorn_worker import REQUEST_READ_SECONDS

pytestmark = [pytest.mark.slow]

SLOW_CLIENTS = 60
SLOW_FOR = REQUEST_READ_SECONDS + 15  # the trickle outlives the deadline, then stops


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "TRADEBOT_VAR_DIR": str(tmp_path / "var"),
        "TRADEBOT_GUNICORN_BIND": f"127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-c", "python:tradebot.gunicorn_conf",
               "tradebot.wsgi:application"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port, "gunicorn", timeout=60)
        base = f"http://127.0.0.1:{port}"
        for _ in range(gunicorn_conf.workers * 2):  # every worker has booted Django
            assert get(base, timeout=60) == 200
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log.read_text()[-3000:])


def get(base: str, *, timeout: float) -> int:
    with urllib.request.urlopen(f"{base}/admin/login/", timeout=timeout) as response:
        return response.status


SLOW_HEADER = b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
# Complete headers, then a body that trickles: the other member of the class.
SLOW_BODY = (
    b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\na="
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


@pytest.mark.parametrize("start", [SLOW_HEADER, SLOW_BODY], ids=["header", "body"])
def test_sixty_slow_clients_do_not_take_the_admin_down(gunicorn: str, start: bytes) -> None:
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
        # Served while the slow clients were still holding their connections.
        assert still_open > 0
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


def test_the_shipped_configuration_limits_request_lines_and_headers() -> None:
    assert gunicorn_conf.worker_class.endswith("DeadlineThreadWorker")
    assert gunicorn_conf.limit_request_line <= 4094
    assert gunicorn_conf.limit_request_fields <= 100
    assert gunicorn_conf.limit_request_field_size <= 8190
    # One PostgreSQL connection per thread that served a request (CONN_MAX_AGE).
    assert gunicorn_conf.threads * gunicorn_conf.workers <= 64
    unit = (PROJECT_ROOT / "deployment" / "systemd" / "tradebot-web.service").read_text()
    assert "-c python:tradebot.gunicorn_conf" in unit
