"""Clocks for the fake exchange: a fixed one (unit tests) and an accelerated, paced one.

The paced clock lets a forward paper run of 14 days take about a minute, and keeps every
verdict independent of machine speed:

    now = origin + (real time elapsed) * speed, but never past the pace limit.

The pace limit follows the readers. A klines request with ``startTime=S`` says "I have
every bar before S"; the clock keeps the bar opening at S (the oldest one some reader still
wants) closed *and tradable* for the engine: a closed bar is traded only while
``now - close < interval`` (engine.live.feeds). So with ``S`` the most advanced request
seen (bars of the paced interval only), the clock stops at ``S + 2 * interval - 2`` ms
until a reader asks for the next bar. Whatever a reader's delays (a slow host, an engine
killed and restarted, an exchange outage), no bar ever becomes "too old to trade" before a
reader got it, and the exchange never runs more than one bar ahead of its readers. While
the clock waits at the limit, it does not bank the lost time: when a reader catches up it
goes on at `speed` from there.

Before any reader has asked, the pace starts at the bar containing ``origin``: that bar
closes and waits, tradable, for the first engine, so a run's first traded bar is known.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class FixedClock:
    """The server time as a plain settable value (the default of the fakes)."""

    paced = False

    def __init__(self, now_ms: int) -> None:
        self.value = int(now_ms)

    def now_ms(self) -> int:
        return self.value

    def acknowledge(self, start_ms: int, step_ms: int) -> None:
        """A reader asked for bars from `start_ms` on: nothing to pace."""


class PacedClock:
    """Accelerated server time, paced by the most advanced reader (module docstring)."""

    paced = True

    def __init__(
        self,
        *,
        origin_ms: int,
        speed: float,
        step_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"clock speed must be a finite number above 0, got {speed}")
        if step_ms < 2:
            raise ValueError(f"paced interval must be at least 2 ms, got {step_ms}")
        self.speed = float(speed)
        self.step_ms = int(step_ms)
        self.origin_ms = int(origin_ms)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._virtual = float(origin_ms)
        self._real = monotonic()
        # Open time of the oldest bar a reader still wants (all before it were read).
        self._wanted = origin_ms // self.step_ms * self.step_ms
        self._held = False

    def snapshot(self) -> dict[str, int]:
        """Where the clock is and which bar its readers want (a restarted fake resumes it:
        started afresh at its origin, it would be behind its readers and wait for ever)."""
        with self._lock:
            return {"now_ms": self._advance(), "wanted_ms": self._wanted}

    def restore(self, snapshot: dict[str, int]) -> None:
        with self._lock:
            self._real = self._monotonic()
            self._wanted = max(self._wanted, int(snapshot["wanted_ms"]))
            self._virtual = max(self._virtual, float(snapshot["now_ms"]))

    def hold(self) -> None:
        """Stop the clock (a test's pause: the engine finishes what it has, then idles)."""
        with self._lock:
            self._advance()
            self._held = True

    def release(self) -> None:
        with self._lock:
            self._advance()
            self._held = False

    @property
    def wanted_ms(self) -> int:
        with self._lock:
            return self._wanted

    def limit_ms(self) -> int:
        """The latest time at which the wanted bar is closed and still tradable."""
        return self._wanted + 2 * self.step_ms - 2

    def now_ms(self) -> int:
        with self._lock:
            return self._advance()

    def _advance(self) -> int:
        real = self._monotonic()
        elapsed = max(0.0, real - self._real)
        self._real = real
        if self._held:
            return int(self._virtual)
        self._virtual = min(self._virtual + elapsed * 1000.0 * self.speed, self.limit_ms())
        return int(self._virtual)

    def acknowledge(self, start_ms: int, step_ms: int) -> None:
        """A reader asked for bars of `step_ms` from `start_ms` on: it has every bar before.

        A request for bars of another interval, or for bars that have not opened yet, does
        not move the pace (a reader cannot pull the clock into the future).
        """
        if step_ms != self.step_ms:
            return
        with self._lock:
            now = self._advance()
            forming = now // self.step_ms * self.step_ms
            wanted = min(start_ms // self.step_ms * self.step_ms, forming)
            self._wanted = max(self._wanted, wanted)
