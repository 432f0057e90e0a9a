"""The demo's market for forward paper trading: the local fake Binance and Fear & Greed
APIs (the tests' fakes, tests/fakes/) as processes, serving the shipped history on an
accelerated clock paced by its readers, so the staging engine's forward run of the
policy's period takes about a minute. Binance itself cannot be reached from a demo
machine, and a forward run must meet bars it has never been shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# An hour bar every 0.06 s: the demo policy's 168-bar paper period in about ten seconds. The
# clock is paced by its readers, so a faster clock never makes the engine miss a bar.
SPEED = 60_000.0
URL_ENVIRONMENT = ("TRADEBOT_BINANCE_API_URL", "TRADEBOT_FNG_API_URL")


@dataclass(frozen=True)
class DemoExchange:
    binance_url: str
    fng_url: str


def _start(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # "url http://127.0.0.1:PORT", then it serves
    if not line.startswith("url "):
        process.kill()
        raise RuntimeError(f"{module} did not start: {line or 'no output'}")
    return process, line.removeprefix("url ")


@contextmanager
def demo_exchange(*, candles_csv: Path, sentiment_csv: Path, origin: str) -> Iterator[DemoExchange]:
    """Both fakes running, and this process's registry pointed at them, until the block ends."""
    binance, binance_url = _start(
        "tests.fakes.binance_server", "--origin", origin, "--speed", str(SPEED),
        "--candles-csv", str(candles_csv),
    )  # fmt: skip
    processes = [binance]
    saved = {name: os.environ.get(name) for name in URL_ENVIRONMENT}
    try:
        fng, fng_url = _start(
            "tests.fakes.fng_server", "--sentiment-csv", str(sentiment_csv),
            "--binance-url", binance_url,
        )  # fmt: skip
        processes.append(fng)
        os.environ.update(dict(zip(URL_ENVIRONMENT, (binance_url, fng_url), strict=True)))
        yield DemoExchange(binance_url, fng_url)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
