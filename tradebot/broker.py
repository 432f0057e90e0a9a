"""The embedded Celery broker: kombu's filesystem transport, made safe for many processes.

Why not kombu's transport as it is: its producer creates the message file, then locks
and writes it, while a consumer renames and reads files without taking the lock. A
consumer that picks a file between the create and the write reads an empty or partial
message, and ``json.loads`` raises ``JSONDecodeError`` out of the worker's consumer loop:
the worker dies (the demo's admin died this way after about 40 minutes). The exchange
tables (``*.exchange``) have the same window when they are first created.

Why not another transport: kombu's SQLAlchemy transport would need SQLAlchemy (a new
dependency) and a SQLite file shared by the web app, workers and beat, with SQLite's
single-writer lock contended by every poll. The filesystem transport needs nothing and
its only fault is non-atomic writes, which POSIX fixes exactly:

* a message is written and fsynced in ``tmp/`` beside the queue folder (same
  filesystem), then ``os.replace``-d into the queue folder. A rename is atomic, so a
  consumer sees a whole message or none;
* a consumer claims a message by renaming it into ``processed/`` (only one rename of
  the same name can succeed, so no message is delivered twice), reads it there, and
  deletes it. A read or decode error is logged and the read retried; a file that stays
  unreadable is moved to ``bad/`` (kept for a human, never silently dropped) and the
  consumer goes on to the next message. It never raises out of the worker;
* exchange tables are opened without truncation and rewritten under the lock; an empty
  or half-written table is logged and re-read.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger("tradebot.broker")

READ_ATTEMPTS = 5
READ_RETRY_SECONDS = 0.05


class AtomicFilesystemChannel(filesystem.Channel):
    """A filesystem channel whose writes are atomic and whose reads never crash the consumer."""

    @property
    def tmp_folder(self) -> Path:
        default = Path(self.data_folder_out).parent / "tmp"
        return Path(self.transport_options.get("tmp_folder", default))

    @property
    def bad_folder(self) -> Path:
        default = Path(self.data_folder_in).parent / "bad"
        return Path(self.transport_options.get("bad_folder", default))

    @property
    def claim_folder(self) -> Path:
        # Always our own folder (kombu's default is the system's /tmp when not storing
        # processed messages): a rename within one filesystem is atomic, across is a copy.
        return Path(self.processed_folder)

    # --- messages ---------------------------------------------------------------

    # kombu's filesystem.Channel (our parent, whose name we keep) calls AbstractChannel's
    # `message` `payload`: no signature matches both, and kombu passes it positionally.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Same name scheme as kombu (sortable by time, then the queue after the first dot).
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        self.tmp_folder.mkdir(parents=True, exist_ok=True)
        staged = self.tmp_folder / name
        try:
            data = str_to_bytes(dumps(payload))
            write_atomically(staged, Path(self.data_folder_out) / name, data)
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to the broker folder: {exc}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        for name in sorted(entry.name for entry in folder.iterdir()):
            if name.partition(".")[2] != wanted:
                continue
            claimed = self.claim_folder / name
            try:
                (folder / name).replace(claimed)
            except OSError:
                continue  # another consumer claimed it first
            payload = self._read_claimed(claimed)
            if payload is None:
                continue
            return payload
        raise Empty()

    def _read_claimed(self, path: Path) -> Any | None:
        """The decoded message at ``path`` (then removed), or None if it stays unreadable."""
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                payload = loads(bytes_to_str(path.read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning(
                    "broker: cannot read message %s (attempt %d of %d): %s",
                    path.name, attempt, READ_ATTEMPTS, exc,
                )  # fmt: skip
                time.sleep(READ_RETRY_SECONDS * attempt)
                continue
            if not self.store_processed:
                path.unlink(missing_ok=True)
            return payload
        self.bad_folder.mkdir(parents=True, exist_ok=True)
        try:
            path.replace(self.bad_folder / path.name)
        except OSError as exc:
            log.error("broker: cannot move unreadable message %s aside: %s", path.name, exc)
            return None
        log.error(
            "broker: message %s stayed unreadable; kept in %s for inspection",
            path.name, self.bad_folder,
        )  # fmt: skip
        return None

    # --- exchange tables --------------------------------------------------------

    def get_table(self, exchange: str) -> list[Any]:
        file = self._exchange_file(exchange)
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                with file.open("rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                    raw = handle.read()
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise ChannelError(f"Cannot open {file}") from exc
            try:
                return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]
            except ValueError as exc:
                log.warning(
                    "broker: exchange table %s unreadable (attempt %d): %s", file.name, attempt, exc
                )
                time.sleep(READ_RETRY_SECONDS * attempt)
        return []

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # Open without truncating, so a concurrent binder's table is never wiped.
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        with os.fdopen(fd, "rb+", buffering=0) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            raw = handle.read()
            table = loads(bytes_to_str(raw)) if raw.strip() else []
            queues = [filesystem.exchange_queue_t(*q) for q in table]
            if entry in queues:
                return
            queues.insert(0, entry)
            handle.seek(0)
            handle.write(str_to_bytes(dumps(queues)))
            handle.truncate()
            os.fsync(handle.fileno())


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel


def write_atomically(staged: Path, final: Path, data: bytes) -> None:
    """Write ``data`` to ``staged``, flush it to disk, then rename it to ``final`` in one step."""
    with staged.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    staged.replace(final)


def folder_options(folder: Path) -> dict[str, Any]:
    """Transport options placing every file of the embedded broker under ``folder``."""
    subfolders = {
        "data_folder_in": folder / "queue",
        "data_folder_out": folder / "queue",
        "processed_folder": folder / "processed",
        "tmp_folder": folder / "tmp",
        "bad_folder": folder / "bad",
        # kombu's default is a relative "control": the working directory (the source tree).
        "control_folder": folder / "control",
    }
    for path in subfolders.values():
        path.mkdir(parents=True, exist_ok=True)
    return {"store_processed": False, **{key: str(path) for key, path in subfolders.items()}}


TRANSPORT_PATH = "tradebot.broker:AtomicFilesystemTransport"
