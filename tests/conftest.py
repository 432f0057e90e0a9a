"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Beside the project by default; TRADEBOT_SHARED_DATA_DIR for a checkout elsewhere (a worktree).
SHARED_DATA_DIR = Path(
    os.environ.get("TRADEBOT_SHARED_DATA_DIR") or PROJECT_ROOT.parent / "shared" / "data"
)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real market data beside the project (three years of hourly candles, Fear & Greed)."""
    if not (SHARED_DATA_DIR / "BTCUSDT-1h.csv").exists():
        pytest.fail(f"real market data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


# --- real Celery workers ------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

ALL_QUEUES = "default,training,backtest,deploy"


def database_url_for_subprocesses() -> str:
    """A DATABASE_URL that points a child process at the database the tests use now."""
    from django.db import connection

    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{config['NAME']}"
    base = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(base._replace(path="/" + config["NAME"]))


def _wait_for_worker_ready(process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{log_path.read_text()[-4000:]}")
        if "ready." in log_path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready in {timeout}s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture
def celery_worker_factory(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real `celery worker` processes against the test database; stop them after.

    ``ready=False`` returns at once: the caller prepares its data while the worker boots
    (seconds of imports) and calls ``process.wait_ready()`` before it sends a task.
    """
    started: list[subprocess.Popen] = []

    def start(
        *,
        queues: str = ALL_QUEUES,
        env: dict[str, str] | None = None,
        name: str = "w1",
        ready: bool = True,
    ) -> subprocess.Popen:
        log_path = tmp_path / f"celery-{name}.log"
        child_env = {
            **os.environ,
            "DATABASE_URL": database_url_for_subprocesses(),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        command = [
            sys.executable, "-m", "celery", "-A", "tradebot", "worker", "--pool=solo",
            "--concurrency=1", f"--queues={queues}", f"--hostname={name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
        ]  # fmt: skip
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        process.log_path = log_path  # type: ignore[attr-defined]
        process.wait_ready = lambda: _wait_for_worker_ready(  # type: ignore[attr-defined]
            process, log_path, timeout=60
        )
        if ready:
            process.wait_ready()  # type: ignore[attr-defined]
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def keyed_and_anchored(settings: Any, tmp_path: Path) -> dict[str, str]:
    """An audit key and anchor file for the test process and its workers alike.

    Set before any event is written, so the whole chain is keyed and anchored.
    """
    audit = {
        "AUDIT_HMAC_KEY": "kill-test-key-outside-the-database",
        "AUDIT_ANCHOR_FILE": str(tmp_path / "audit-anchors.jsonl"),
    }
    for name, value in audit.items():
        setattr(settings, name, value)
    return audit
