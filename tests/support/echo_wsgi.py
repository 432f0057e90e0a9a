"""A WSGI app that answers with what it received: the body's length and SHA-256, and the path.

Served by the shipped gunicorn configuration in tests/foundation/test_gunicorn_request_
buffering.py, so a test can check that the worker's request buffering hands the
application exactly the bytes a client sent, however they were framed and fragmented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    answer = f"{len(body)} {hashlib.sha256(body).hexdigest()} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]
