"""A task's database writes survive a dropped connection, and its record survives the database.

A deploy runs for minutes against hosts; its record (every step, then the outcome) is
written as it goes. PostgreSQL may drop the worker's connection at any moment (a
restart, a failover, ``pg_terminate_backend``): Django then raises on the next query
and keeps the broken connection. ``db_write`` closes it and runs the write again on
a fresh one, a bounded number of times.

If the database stays away past that bound, nothing is dropped: every step is
first appended to a local journal (JSON lines, ``O_APPEND`` + ``fsync``, one file per
deployment under ``TRADEBOT_VAR_DIR/deploy-journal/``), and so is the outcome. The
journal is written before the database, so it always holds at least what the
database holds; replaying it (the task itself once the database is back, and
reconcile on every beat) writes what is missing, idempotently: each step carries a
record id and is stored with its audit event in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = (OperationalError, InterfaceError)
DEFAULT_ATTEMPTS = 6
DEFAULT_BACKOFF_SECONDS = 0.25
# Test-only: terminate this process's own database backend (from a second connection)
# just before each first attempt of a write, as a storm of pg_terminate_backend would
# (unset, always, outside those tests: one environment lookup per write).
TERMINATE_ENV_VAR = "TRADEBOT_TEST_TERMINATE_DB_BEFORE_WRITES"


class DatabaseUnavailable(RuntimeError):
    """The database refused a write on every attempt; the caller keeps it in its journal."""


def retry_attempts() -> int:
    return max(1, int(getattr(settings, "TRADEBOT_DB_RETRY_ATTEMPTS", DEFAULT_ATTEMPTS)))


def db_write(action: Callable[[], T], *, what: str) -> T:
    """Run ``action`` (its own transaction); on a dropped connection, again on a fresh one.

    Inside an outer transaction there is nothing to retry (what it wrote is gone with
    the connection): the error goes up to whoever opened it.
    """
    attempts = retry_attempts()
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            if attempt == 1:
                _terminate_own_backend_for_test(what)
            return action()
        except RETRYABLE as error:
            if connection.in_atomic_block:
                raise
            last = error
            logger.warning("%s: database connection lost (attempt %s): %s", what, attempt, error)
            drop_broken_connection()
            if attempt < attempts:
                time.sleep(DEFAULT_BACKOFF_SECONDS * attempt)
    raise DatabaseUnavailable(
        f"{what}: the database refused {attempts} attempts (last: {last})"
    ) from last


def drop_broken_connection() -> None:
    """Close this thread's connection so the next query opens a fresh one."""
    with contextlib.suppress(Exception):  # closing a dead socket may itself fail
        connection.close()


def _terminate_own_backend_for_test(what: str) -> None:
    """``1``: before every write; any other value: before writes whose ``what`` has it."""
    armed = os.environ.get(TERMINATE_ENV_VAR)
    if not armed or connection.vendor != "postgresql" or (armed != "1" and armed not in what):
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
    except RETRYABLE:
        drop_broken_connection()
        return
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()


# --------------------------------------------------------------------------- the journal


def journal_dir() -> Path:
    return Path(settings.VAR_DIR) / "deploy-journal"


class DeploymentJournal:
    """The append-only local record of one deployment's steps and outcome."""

    def __init__(self, deployment_id: int, folder: Path | None = None) -> None:
        self.deployment_id = deployment_id
        self.path = (folder or journal_dir()) / f"d{deployment_id}.jsonl"

    def append(self, entry: dict[str, Any]) -> None:
        """One line, on disk (fsync) before this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, default=str, sort_keys=True) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every complete line; a torn last line (a crash mid-write) is skipped."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    yield entry

    def steps(self) -> list[dict[str, Any]]:
        return [e["entry"] for e in self.entries() if e.get("kind") == "step"]

    def finish(self) -> dict[str, Any] | None:
        finishes = [e for e in self.entries() if e.get("kind") == "finish"]
        return finishes[-1] if finishes else None

    def exists(self) -> bool:
        return self.path.exists()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def journaled_deployment_ids() -> list[int]:
    folder = journal_dir()
    if not folder.is_dir():
        return []
    ids = []
    for path in folder.glob("d*.jsonl"):
        with contextlib.suppress(ValueError):
            ids.append(int(path.stem[1:]))
    return sorted(ids)
