"""Shared options and output for the market data commands (thin wrappers over engine.data).

The leading underscore keeps Django from listing this module as a command.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from engine.data import DataError, ValidationPolicy, ValidationReport
from engine.dates import DateError, check_window
from engine.progress import progress_reporter

T = TypeVar("T")
# --on-gaps fill without --max-fill: short outages only (the shipped history misses one hour).
DEFAULT_FILL_ROWS = 3


def add_data_dir_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="store folder (default: settings.TRADEBOT_DATA_DIR)",
    )


def add_json_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable JSON summary only"
    )


def add_policy_arguments(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("validation policy")
    group.add_argument(
        "--on-bad-rows",
        choices=["refuse", "drop"],
        default="refuse",
        help="rows with NaN, non-positive prices, negative volume, OHLC inconsistencies, "
        "duplicates: refuse the whole input (default) or drop those rows",
    )
    group.add_argument(
        "--on-gaps",
        choices=["refuse", "report", "fill"],
        default="report",
        help="missing rows: refuse, keep and report (default), or forward-fill short ones",
    )
    group.add_argument(
        "--max-fill",
        type=int,
        default=None,
        help=f"with --on-gaps fill: longest gap (in rows) to fill, at least 1 (default "
        f"{DEFAULT_FILL_ROWS}); longer ones stay reported",
    )


def data_dir_from(options: dict[str, Any]) -> Path:
    return Path(options.get("data_dir") or settings.TRADEBOT_DATA_DIR)


def policy_from(options: dict[str, Any]) -> ValidationPolicy:
    max_fill = options.get("max_fill")
    if options["on_gaps"] == "fill":
        # A fill of 0 rows would fill nothing and still say "fill": refused, never silent.
        if max_fill is None:
            max_fill = DEFAULT_FILL_ROWS
        elif max_fill < 1:
            raise CommandError(f"--max-fill must be at least 1 with --on-gaps fill, got {max_fill}")
    try:
        return ValidationPolicy(
            bad_rows=options["on_bad_rows"], gaps=options["on_gaps"], max_fill=max_fill or 0
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def check_dates(options: dict[str, Any], start: str, end: str) -> None:
    """A window whose start is not before its end is refused, naming both options."""
    try:
        check_window(
            options.get(start), options.get(end), start_option=f"--{start}", end_option=f"--{end}"
        )
    except DateError as exc:
        raise CommandError(str(exc)) from exc


def run_engine(call: Callable[[], T]) -> T:
    """Run an engine call; its refusals become CommandError with the engine's message."""
    try:
        return call()
    except (DataError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def emit(command: BaseCommand, options: dict[str, Any], summary: dict[str, Any], text: str) -> None:
    if options.get("json"):
        command.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        command.stdout.write(text)


def report_lines(report: ValidationReport) -> str:
    lines = [f"  validation: {report.summary()}"]
    gaps = report.issues.get("gaps")
    if gaps and gaps.count:
        lines.append(f"  gaps in the input: {gaps.count} ({gaps.missing_rows} missing rows), "
                     "first at " + ", ".join(gaps.first))  # fmt: skip
        if report.filled_rows:
            left = gaps.missing_rows - report.filled_rows
            lines.append(f"  filled {report.filled_rows} missing rows; {left} left unfilled")
    return "\n".join(lines)


@contextmanager
def progress_bar(options: dict[str, Any], description: str) -> Iterator[Callable[[int, int], None]]:
    """The engine's progress(done, total) callback as a bar on a terminal, else plain lines.

    On stderr, so ``--json`` output on stdout stays machine-readable either way.
    """
    with progress_reporter(description, unit="candle", enabled=not options.get("json")) as update:
        yield update
