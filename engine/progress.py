"""Progress of long work: a tqdm bar on a terminal, plain lines when not on one.

Engine code reports through a ``progress(done, total)`` callback and knows nothing of the
screen; a command wraps its work in :func:`progress_reporter` to turn those calls into a
bar (interactive) or into a line every few seconds (logs, CI, journald), where a bar's
carriage returns would be noise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

ProgressCallback = Callable[[int, int], None]
PLAIN_LINE_SECONDS = 5.0


@contextmanager
def progress_reporter(
    description: str,
    *,
    unit: str = "it",
    stream: TextIO | None = None,
    enabled: bool = True,
    min_interval: float = PLAIN_LINE_SECONDS,
) -> Iterator[ProgressCallback]:
    """Yield a ``progress(done, total)`` callback drawing a bar or writing plain lines."""
    out = _raw(stream if stream is not None else sys.stderr)
    if not enabled:
        yield lambda done, total: None
    elif _is_terminal(out):
        with _bar(description, unit, out) as update:
            yield update
    else:
        yield from _plain_lines(description, unit, out, min_interval)


@contextmanager
def _bar(description: str, unit: str, out: TextIO) -> Iterator[ProgressCallback]:
    bar = tqdm(desc=description, unit=unit, file=out, leave=False, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


@dataclass
class _PlainState:
    """What the plain-line reporter has seen and last written (typed, not a mixed dict)."""

    last_line: float = float("-inf")
    done: int = 0
    total: int = 0
    written: tuple[int, int] = (-1, -1)


def _plain_lines(
    description: str, unit: str, out: TextIO, min_interval: float
) -> Iterator[ProgressCallback]:
    state = _PlainState()

    def write() -> None:
        done, total = state.done, state.total
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        out.write(f"{description}: {done}/{total} {unit}{percent}\n")
        out.flush()
        state.written = (done, total)
        state.last_line = time.monotonic()

    def update(done: int, total: int) -> None:
        state.done, state.total = done, total
        if time.monotonic() - state.last_line >= min_interval:
            write()

    yield update
    if state.total and state.written != (state.done, state.total):
        write()  # the final count, always


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


StageCallback = Callable[[str], None]


@contextmanager
def stage_reporter(
    description: str, *, stream: TextIO | None = None, enabled: bool = True
) -> Iterator[StageCallback]:
    """Yield a ``stage(message)`` callback: one tqdm line naming the stage on a terminal,
    one plain line per new stage elsewhere (no carriage return, no colour)."""
    out = _raw(stream if stream is not None else sys.stderr)
    if not enabled:
        yield lambda message: None
    elif _is_terminal(out):
        bar = tqdm(
            desc=description,
            total=None,
            bar_format="{desc} [{elapsed}]",
            file=out,
            leave=False,
            dynamic_ncols=True,
        )

        def on_terminal(message: str) -> None:
            bar.set_description_str(f"{description}: {message}", refresh=True)

        try:
            yield on_terminal
        finally:
            bar.close()
    else:
        last: list[str] = []

        def plain(message: str) -> None:
            if last and last[-1] == message:
                return
            last.append(message)
            out.write(f"{description}: {message}\n")
            out.flush()

        yield plain


def _raw(stream: TextIO) -> TextIO:
    """Django's OutputWrapper colours stderr red and ends every write with a newline: a bar
    drawn through it becomes a red line per update. Write to the stream it wraps."""
    return getattr(stream, "_out", stream)
