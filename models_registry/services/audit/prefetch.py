"""Batches fetched one ahead in a thread while the caller hashes the current one (both
verification paths read the chain through it)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

_DONE = object()
_Batch = TypeVar("_Batch")


def _prefetched(batches: Iterator[_Batch]) -> Generator[_Batch, None, None]:
    """`batches`, with the next one fetched in a thread while the caller hashes this one.

    PostgreSQL formats rows in its own process and psycopg waits without the GIL, so the
    database's work and the hashing overlap. At most two batches wait besides the one in
    use. Stopping early (a broken row) stops the thread before the connection is reused.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                handoff.put(batch)
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="audit-prefetch", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to hand over a batch
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()
