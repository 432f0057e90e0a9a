"""The shipped worker reads whole requests in its event loop (#26, tradebot/gunicorn_worker.py).

Real gunicorn, the shipped configuration, one worker, and an app that echoes the body's
length and hash (tests/support/echo_wsgi.py). Generated requests, framed by Content-Length
or chunked, cut into arbitrary fragments and pipelined, must reach the application byte
for byte; what cannot be a request gets its one-line answer from the loop.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gunicorn import shipped_gunicorn
from tradebot.gunicorn_worker import SPOOL_IN_MEMORY_BYTES

pytestmark = [pytest.mark.slow]

READ_SECONDS = 3  # this server's request deadline (TRADEBOT_GUNICORN_READ_SECONDS)
UPLOAD_BYTES = 50_000  # this server's TRADEBOT_MAX_UPLOAD_BYTES
LARGEST_REQUEST = UPLOAD_BYTES + 1024 * 1024  # what the worker buffers at most


@pytest.fixture(scope="module")
def echo_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {
        "TRADEBOT_GUNICORN_WORKERS": "1",
        "TRADEBOT_GUNICORN_READ_SECONDS": str(READ_SECONDS),
        "TRADEBOT_MAX_UPLOAD_BYTES": str(UPLOAD_BYTES),
    }
    log = tmp_path_factory.mktemp("echo") / "gunicorn.log"
    with shipped_gunicorn("tests.support.echo_wsgi:application", log, env) as port:
        yield port


@dataclass(frozen=True)
class Sent:
    path: str
    body: bytes
    wire: bytes


def framed(path: str, body: bytes, chunks: list[int] | None, *, close: bool = False) -> Sent:
    """One request's bytes: Content-Length framing, or chunked with these chunk sizes."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if close:
        head += "Connection: close\r\n"
    if chunks is None:
        return Sent(path, body, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    wire = bytearray(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
    at = 0
    for size in chunks:
        piece = body[at : at + size]
        if piece:
            wire += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        at += size
    if at < len(body):
        wire += f"{len(body) - at:x}\r\n".encode() + body[at:] + b"\r\n"
    wire += b"0\r\n\r\n"
    return Sent(path, body, bytes(wire))


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` HTTP/1.1 answers (status, body) that carry Content-Length."""
    data = b""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end].decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            if 100 <= status < 200:  # an interim answer: 100 Continue
                data = data[end + 4 :]
                continue
            length = next(
                int(line.split(":", 1)[1])
                for line in head
                if line.lower().startswith("content-length:")
            )
            if len(data) >= end + 4 + length:
                answers.append((status, data[end + 4 : end + 4 + length]))
                data = data[end + 4 + length :]
                continue
        more = sock.recv(65536)
        assert more, f"the server closed after {len(answers)} of {count} answers"
        data += more
    return answers


def echo_of(sent: Sent) -> bytes:
    return f"{len(sent.body)} {hashlib.sha256(sent.body).hexdigest()} {sent.path}".encode()


def cut(wire: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(wire), *(p % (len(wire) + 1) for p in points)})
    return [wire[a:b] for a, b in itertools.pairwise(edges)]


request = st.builds(
    lambda path, body, chunked, chunks: (path, body, chunks if chunked else None),
    st.from_regex(r"/[a-z0-9]{0,12}", fullmatch=True),
    st.binary(max_size=3000),
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=700), max_size=6),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(request, min_size=1, max_size=3),
    points=st.lists(st.integers(min_value=0, max_value=20_000), max_size=8),
)
def test_any_framing_and_fragmentation_reaches_the_app_byte_for_byte(
    echo_port: int, requests: list[tuple[str, bytes, list[int] | None]], points: list[int]
) -> None:
    sent = [framed(path, body, chunks) for path, body, chunks in requests]
    wire = b"".join(s.wire for s in sent)  # pipelined: every request before any answer
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 5) as sock:
        for fragment in cut(wire, points):
            sock.sendall(fragment)
            time.sleep(0.002)  # let the loop see a partial request
        answers = read_answers(sock, len(sent))
    assert answers == [(200, echo_of(s)) for s in sent]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_body_spooled_to_disk_reaches_the_app_whole(echo_port: int, chunked: bool) -> None:
    """Past SPOOL_IN_MEMORY_BYTES the loop buffers to a temporary file: same bytes out."""
    body = bytes(range(256)) * (900_000 // 256)  # above the spool, below the largest request
    assert SPOOL_IN_MEMORY_BYTES < len(body) < LARGEST_REQUEST
    sent = framed("/spooled", body, [100_000] * 10 if chunked else None)
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 5) as sock:
        sock.sendall(sent.wire)
        assert read_answers(sock, 1) == [(200, echo_of(sent))]


def test_a_kept_alive_connection_serves_its_next_request(echo_port: int) -> None:
    first, second = framed("/one", b"a" * 10, None), framed("/two", b"b" * 20, [7, 7], close=True)
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 5) as sock:
        sock.sendall(first.wire)
        assert read_answers(sock, 1) == [(200, echo_of(first))]
        sock.sendall(second.wire)
        assert read_answers(sock, 1) == [(200, echo_of(second))]
        assert sock.recv(100) == b""  # Connection: close is honoured


def test_an_incomplete_request_is_answered_408_by_its_deadline(echo_port: int) -> None:
    partial_request = framed("/slow", b"x" * 100, None).wire[:-40]
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 10) as sock:
        started = time.monotonic()
        sock.sendall(partial_request)
        answer = sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(f"request not received within {READ_SECONDS} s\n".encode())
    assert READ_SECONDS - 0.5 <= waited <= READ_SECONDS + 5


@pytest.mark.parametrize("chunked", [False, True], ids=["announced", "chunked"])
def test_a_body_larger_than_the_largest_upload_is_refused_413(
    echo_port: int, chunked: bool
) -> None:
    size = LARGEST_REQUEST + 1
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 10) as sock:
        if chunked:
            # A little past the cap, so the server's linger drains the rest and closes
            # with nothing unread (a FIN, not a reset that would lose the answer).
            sock.sendall(framed("/big", b"z" * size, [65536] * (size // 65536 + 1)).wire)
        else:
            sock.sendall(
                f"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
            )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert b"largest upload tradebot accepts (TRADEBOT_MAX_UPLOAD_BYTES)" in answer


def test_a_client_expecting_100_continue_is_told_to_go_on(echo_port: int) -> None:
    body = b"q" * 5000
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 5) as sock:
        sock.sendall(
            b"POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert read_answers(sock, 1) == [(200, echo_of(Sent("/expect", body, b"")))]


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", b"400"),  # no Host, body owed
        (b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 500_000 + b"\r\n\r\n", b"431"),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", b"400"),
    ],
    ids=["no-host", "huge-header", "two-lengths"],
)
def test_a_request_h11_refuses_is_answered_at_once(
    echo_port: int, wire: bytes, status: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 10) as sock:
        started = time.monotonic()
        sock.sendall(wire)
        answer = _read_until_closed(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80]
    assert b"malformed request: " in answer
    assert b"X-Content-Type-Options: nosniff\r\n" in answer
    assert len(answer) < 1000  # the client's bytes are not echoed back at length
    assert waited < READ_SECONDS  # refused when read, not when the deadline came


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: x\r\n"]),
    noise=st.binary(max_size=600),
)
def test_any_bytes_get_an_answer_or_a_close_by_the_deadline(
    echo_port: int, start: bytes, noise: bytes
) -> None:
    """Whatever a client sends, it is answered or closed by its deadline."""
    with socket.create_connection(("127.0.0.1", echo_port), timeout=READ_SECONDS + 10) as sock:
        started = time.monotonic()
        sock.sendall(start + noise + b"\r\n\r\n")
        answer = _read_until_closed(sock)
        waited = time.monotonic() - started
    assert waited <= READ_SECONDS + 3
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status == 200 or 400 <= status < 500, answer[:80]


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while more := sock.recv(65536):
            data += more
    except ConnectionResetError:
        pass  # the answer was read before the reset
    return data
