"""Run a command against the full stack: PostgreSQL and Redis, started here if not running.

``python -m tests.stack -- pytest [args]`` uses ``DATABASE_URL`` and
``CELERY_BROKER_URL`` when they are set and reachable; otherwise it starts a
throwaway PostgreSQL and Redis on free loopback ports in temporary folders,
runs the command with those URLs, and stops them afterwards, whatever happens.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not accept connections on 127.0.0.1:{port} within {timeout}s")


def _postgres_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if found:
        return found[-1]
    on_path = shutil.which(tool)
    if on_path:
        return on_path
    raise StackError(f"PostgreSQL's {tool} was not found: install postgresql (see .ci/run).")


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root, so root runs it as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="tradebot-pg-"))
    if os.geteuid() == 0:
        uid = pwd.getpwnam("postgres").pw_uid
        os.chown(folder, uid, -1)
    port = free_port()
    data = folder / "data"
    pg_ctl = _postgres_bin("pg_ctl")
    subprocess.run(
        _as_postgres_user(
            [_postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, "PostgreSQL")
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server was not found: install redis-server (see .ci/run).")
    folder = Path(tempfile.mkdtemp(prefix="tradebot-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, "Redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def run(command: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        database_url = os.environ.get("DATABASE_URL", "")
        if not (database_url.startswith("postgres") and reachable(database_url)):
            database_url = stack.enter_context(throwaway_postgres())
            print(f"[stack] started PostgreSQL at {database_url}", flush=True)
        broker_url = os.environ.get("CELERY_BROKER_URL", "")
        if not (broker_url.startswith("redis") and reachable(broker_url)):
            broker_url = stack.enter_context(throwaway_redis())
            print(f"[stack] started Redis at {broker_url}", flush=True)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "TRADEBOT_FULL_STACK": "1",
            "ENVIRONMENT": "test",
        }
        child = subprocess.Popen(command, env=env)
        # Forward Ctrl-C and TERM to the tests, then still stop the services.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
        return child.wait()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m tests.stack -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        return run(argv)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"[stack] {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
