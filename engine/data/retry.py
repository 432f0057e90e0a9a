"""Bounded retries with exponential backoff, shared by the Binance and Fear & Greed sources."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engine.data.errors import SourceError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a remote source.

    A server's Retry-After is honoured when it is at most ``max_delay``; a
    longer one (an IP ban can last days) fails at once with a clear error
    rather than blocking a worker. ``sleep`` is a parameter so tests can
    record the waits instead of spending them.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): 1, 2, 4, ... capped at max_delay."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


class Retry(Exception):
    """Raised by a classifier: the failure is transient; wait (at least) ``wait`` seconds."""

    def __init__(self, reason: str, *, wait: float | None = None) -> None:
        self.reason = reason
        self.wait = wait
        super().__init__(reason)


def call_with_retries(
    call: Callable[[], T],
    *,
    retry: RetryPolicy,
    what: str,
    classify: Callable[[Exception], Retry | Exception],
) -> T:
    """Run ``call``; on a transient failure (``classify`` returns Retry) wait and try again.

    ``classify`` maps an exception either to a Retry or to the exception to raise.
    """
    last_reason = ""
    for attempt in range(1, retry.max_attempts + 1):
        try:
            return call()
        except Exception as exc:
            verdict = classify(exc)
            if not isinstance(verdict, Retry):
                raise verdict from exc
            last_reason = verdict.reason
            if attempt == retry.max_attempts:
                break
            delay = retry.backoff(attempt) if verdict.wait is None else verdict.wait
            if delay > retry.max_delay:
                raise SourceError(
                    f"{what}: {verdict.reason}; the server asks to wait {delay:.0f} s, "
                    f"more than the {retry.max_delay:.0f} s allowed: not retrying"
                ) from exc
            logger.warning("%s: %s; retry %d in %.1f s", what, verdict.reason, attempt, delay)
            retry.sleep(delay)
    raise SourceError(f"{what}: failed after {retry.max_attempts} attempts: {last_reason}")


def retry_after_seconds(headers: object) -> float | None:
    """The Retry-After header in seconds, or None when absent or not a number."""
    value = getattr(headers, "get", lambda _key: None)("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
