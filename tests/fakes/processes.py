"""The fake exchange and Fear & Greed API as their own processes, for engines on test hosts.

An engine on an SSH test host reaches them by URL like any exchange. The Fear & Greed fake
follows the exchange's (accelerated, paced) clock, so both agree on what "today" is.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ExchangeUrls:
    binance: str
    fng: str | None


def _start(arguments: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", *arguments],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().split()  # "url http://127.0.0.1:PORT", then nothing
    if len(first) != 2 or first[0] != "url":
        process.kill()
        process.wait()
        raise RuntimeError(f"{arguments[0]} did not start (exit {process.returncode})")
    return process, first[1]


@contextmanager
def exchange_processes(
    *,
    origin: str,
    speed: float = 20_000.0,
    candles_csv: Path | None = None,
    sentiment_csv: Path | None = None,
    shift_days: int = 0,
) -> Iterator[ExchangeUrls]:
    """Start the fake Binance (and, with `sentiment_csv`, Fear & Greed); stop them after.

    `shift_days` moves the stored candles and the sentiment together: the bar served at
    `origin` is the stored one `shift_days` days earlier. An engine then needs no
    `--sentiment-csv` (its dates are the stored ones): it reads the shifted series from
    the Fear & Greed fake."""
    arguments = [
        "tests.fakes.binance_server", "--port", "0", "--speed", repr(speed), "--origin", origin,
    ]  # fmt: skip
    if candles_csv is not None:
        arguments += ["--candles-csv", str(candles_csv)]
    if shift_days:
        stored = datetime.fromisoformat(origin.replace("Z", "+00:00")) - timedelta(days=shift_days)
        arguments += ["--candles-at-origin", stored.isoformat()]
    processes: list[subprocess.Popen[str]] = []
    try:
        binance, binance_url = _start(arguments)
        processes.append(binance)
        fng_url = None
        if sentiment_csv is not None:
            fng, fng_url = _start(
                ["tests.fakes.fng_server", "--port", "0", "--binance-url", binance_url,
                 "--sentiment-csv", str(sentiment_csv), "--shift-days", str(shift_days)]
            )  # fmt: skip
            processes.append(fng)
        yield ExchangeUrls(binance_url, fng_url)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
