"""Real gunicorn with the shipped configuration (tradebot/gunicorn_conf.py), for tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.stack import free_port, wait_for_port


@contextlib.contextmanager
def shipped_gunicorn(app: str, log: Path, env: Mapping[str, str]) -> Iterator[int]:
    """`app` (module:callable) served on a free loopback port, which is yielded; stopped after.

    `env` adds to (or overrides) this process's environment; gunicorn's output goes to `log`,
    whose tail is printed when it stops (pytest shows it for a failed test)."""
    port = free_port()
    environment = {**os.environ, "TRADEBOT_GUNICORN_BIND": f"127.0.0.1:{port}", **env}
    command = [sys.executable, "-m", "gunicorn", "-c", "python:tradebot.gunicorn_conf", app]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environment, stdout=out, stderr=out
        )
    try:
        wait_for_port(port, "gunicorn", timeout=60)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log.read_text()[-3000:])
