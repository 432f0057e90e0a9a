"""Reading candle and sentiment CSV files (plain or .gz), with errors that name file and line.

Candle layouts recognised from the first line:

* the shared-data layout: header ``date,open,high,low,close,volume`` with
  ``date`` as ``YYYY-MM-DD HH:MM:SS`` in UTC;
* Binance's kline CSV (data.binance.vision), 12 fields, with the header
  ``open_time,open,high,low,close,volume,close_time,quote_volume,count,
  taker_buy_volume,taker_buy_quote_volume,ignore`` or without any header;
  times in milliseconds, or microseconds as Binance writes since 2025.

Sentiment: ``timestamp,value,classification,date`` (alternative.me's export,
``timestamp`` in Unix seconds, ``date`` as DD/MM/YYYY), or the same without
``date``, or ``value_classification`` as the API names it.

Everything is parsed and checked before the store is touched, so a bad file
leaves the store exactly as it was.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data.errors import CsvFormatError
from engine.data.frames import INDEX_NAME, SENTIMENT_INDEX_NAME, SENTIMENT_NAME
from engine.data.intervals import interval_timedelta

SHARED_KLINE_HEADER = ("date", "open", "high", "low", "close", "volume")
BINANCE_KLINE_HEADER = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
# Binance's names for the kline fields -> the store's column names.
_BINANCE_TO_STORE = {
    "quote_volume": "quote_volume",
    "count": "trades",
    "taker_buy_volume": "taker_buy_base",
    "taker_buy_quote_volume": "taker_buy_quote",
}
SENTIMENT_HEADERS = (
    ("timestamp", "value", "classification", "date"),
    ("timestamp", "value", "classification"),
    ("timestamp", "value", "value_classification"),
    ("value", "value_classification", "timestamp"),
)

_FIRST_LINE_LIMIT = 64 * 1024
# Epoch timestamps in these ranges cover the years 1973 to 5138 in each unit.
_MS_RANGE = (10**11, 10**14)
_US_RANGE = (10**14, 10**17)


@dataclass(frozen=True)
class _Layout:
    columns: tuple[str, ...]
    has_header: bool
    kind: str  # "shared" or "binance"


def read_kline_csv(path: Path | str, interval: str) -> pd.DataFrame:
    """Parse a kline CSV into a candle frame (unsorted, unvalidated rows kept as in the file)."""
    path = Path(path)
    layout = _kline_layout(path, _first_line(path))
    raw = _read_strings(path, layout)
    if layout.kind == "shared":
        open_time = _parse_datetimes(path, raw["date"], "date")
    else:
        open_time = _parse_epochs(path, raw["open_time"], "open_time")
    frame = pd.DataFrame(index=pd.DatetimeIndex(open_time, name=INDEX_NAME))
    for name in ("open", "high", "low", "close", "volume"):
        frame[name] = _parse_numbers(path, raw[name], name)
    if layout.kind == "binance":
        frame["close_time"] = _parse_epochs(path, raw["close_time"], "close_time")
        for binance_name, store_name in _BINANCE_TO_STORE.items():
            frame[store_name] = _parse_numbers(path, raw[binance_name], binance_name)
    _check_step_matches_interval(path, frame.index, interval)
    return frame


def read_sentiment_csv(path: Path | str) -> pd.Series:
    """Parse a Fear & Greed CSV into a daily series indexed at UTC midnight."""
    path = Path(path)
    header = _split_header(_first_line(path))
    if header not in SENTIMENT_HEADERS:
        raise CsvFormatError(
            path,
            f"unrecognised columns {','.join(header)!r}; expected "
            + " or ".join(repr(",".join(h)) for h in SENTIMENT_HEADERS),
            line=1,
        )
    raw = _read_strings(path, _Layout(header, has_header=True, kind="sentiment"))
    seconds = _parse_numbers(path, raw["timestamp"], "timestamp")
    days = pd.to_datetime(seconds, unit="s", utc=True).floor("D")
    if "date" in raw:
        _check_dates_agree(path, raw["date"], days)
    values = _parse_numbers(path, raw["value"], "value")
    index = pd.DatetimeIndex(days, name=SENTIMENT_INDEX_NAME)
    return pd.Series(values, index=index, name=SENTIMENT_NAME, dtype="float64")


# --- layout ------------------------------------------------------------------------------


def _open_text_bytes(path: Path) -> BufferedIOBase:
    # Both a GzipFile and a plain binary file are buffered binary streams.
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _first_line(path: Path) -> str:
    if not path.exists():
        raise CsvFormatError(path, "file not found")
    try:
        with _open_text_bytes(path) as handle:
            line = handle.readline(_FIRST_LINE_LIMIT)
    except (OSError, EOFError) as exc:
        raise CsvFormatError(path, f"cannot be read ({exc})") from exc
    if not line.strip():
        raise CsvFormatError(path, "file is empty: no header and no rows", line=1)
    if len(line) >= _FIRST_LINE_LIMIT and not line.endswith(b"\n"):
        raise CsvFormatError(path, "first line is longer than 64 KiB: not a CSV file", line=1)
    try:
        return line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise CsvFormatError(path, "not UTF-8 text (binary or garbage?)", line=1) from None


def _split_header(line: str) -> tuple[str, ...]:
    return tuple(field.strip().lower() for field in line.split(","))


def _kline_layout(path: Path, first_line: str) -> _Layout:
    header = _split_header(first_line)
    if header == SHARED_KLINE_HEADER:
        return _Layout(SHARED_KLINE_HEADER, has_header=True, kind="shared")
    if header == BINANCE_KLINE_HEADER:
        return _Layout(BINANCE_KLINE_HEADER, has_header=True, kind="binance")
    if len(header) == len(BINANCE_KLINE_HEADER) and header[0].isdigit():
        return _Layout(BINANCE_KLINE_HEADER, has_header=False, kind="binance")
    shown = first_line if len(first_line) <= 120 else first_line[:120] + "..."
    raise CsvFormatError(
        path,
        f"unrecognised columns {shown!r}; expected the header {','.join(SHARED_KLINE_HEADER)!r}, "
        f"Binance's kline header {','.join(BINANCE_KLINE_HEADER)!r}, "
        "or Binance's 12-field kline rows without a header",
        line=1,
    )


# --- parsing -----------------------------------------------------------------------------


def _read_strings(path: Path, layout: _Layout) -> pd.DataFrame:
    """All fields as text, one row per physical line so row positions map to line numbers."""
    try:
        raw = pd.read_csv(
            path,
            header=None,
            names=list(layout.columns),
            skiprows=1 if layout.has_header else 0,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
            na_values=[""],
            compression="infer",
            encoding="utf-8",
            engine="c",
        )
    except UnicodeDecodeError:
        line = _first_undecodable_line(path)
        raise CsvFormatError(path, "not UTF-8 text (binary or garbage?)", line=line) from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc, layout) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CsvFormatError(path, f"cannot be read ({exc})") from exc
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.all():
        raise CsvFormatError(
            path, "no data rows after the header", line=2 if layout.has_header else 1
        )
    if layout.has_header:
        raw.index = raw.index + 2
    else:
        raw.index = raw.index + 1
    return raw[~blank]


def _parser_error(path: Path, exc: pd.errors.ParserError, layout: _Layout) -> CsvFormatError:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match:
        expected, line, saw = (int(g) for g in match.groups())
        return CsvFormatError(path, f"expected {expected} fields, found {saw}", line=line)
    match = re.search(r"line (\d+)", str(exc))
    where = int(match.group(1)) if match else None
    return CsvFormatError(path, f"malformed CSV ({exc})", line=where)


def _first_undecodable_line(path: Path) -> int | None:
    with _open_text_bytes(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _parse_numbers(path: Path, column: pd.Series, field: str) -> np.ndarray:
    numbers = pd.to_numeric(column, errors="coerce")
    _raise_on_first_bad(path, column, numbers.isna(), field, "a number")
    return numbers.to_numpy(dtype="float64")


def _parse_datetimes(path: Path, column: pd.Series, field: str) -> pd.DatetimeIndex:
    times = pd.to_datetime(column, format="%Y-%m-%d %H:%M:%S", utc=True, errors="coerce")
    _raise_on_first_bad(path, column, times.isna(), field, "a UTC time as YYYY-MM-DD HH:MM:SS")
    return pd.DatetimeIndex(times)


def _parse_epochs(path: Path, column: pd.Series, field: str) -> pd.DatetimeIndex:
    """Epoch integers in ms or us; one unit per file, a mixture names the first odd line."""
    numbers = pd.to_numeric(column, errors="coerce")
    _raise_on_first_bad(path, column, numbers.isna(), field, "an integer timestamp")
    values = numbers.to_numpy(dtype="int64")
    is_ms = (values >= _MS_RANGE[0]) & (values < _MS_RANGE[1])
    is_us = (values >= _US_RANGE[0]) & (values < _US_RANGE[1])
    neither = ~(is_ms | is_us)
    if neither.any():
        line = int(column.index[np.argmax(neither)])
        raise CsvFormatError(
            path,
            f"{field} {values[np.argmax(neither)]} is neither milliseconds nor microseconds "
            "since 1970",
            line=line,
        )
    if is_ms.any() and is_us.any():
        first_unit_is_ms = bool(is_ms[0])
        odd = is_us if first_unit_is_ms else is_ms
        position = int(np.argmax(odd))
        units = (
            ("milliseconds", "microseconds")
            if first_unit_is_ms
            else ("microseconds", "milliseconds")
        )
        raise CsvFormatError(
            path,
            f"mixed timestamp units: {field} {values[position]} is in {units[1]} "
            f"but line {int(column.index[0])} is in {units[0]}",
            line=int(column.index[position]),
        )
    unit = "ms" if is_ms.any() else "us"
    return pd.DatetimeIndex(pd.to_datetime(values, unit=unit, utc=True))


def _raise_on_first_bad(
    path: Path, column: pd.Series, bad: pd.Series, field: str, expected: str
) -> None:
    if not bad.any():
        return
    line = int(bad.idxmax())
    text = column.loc[line]
    if pd.isna(text):
        raise CsvFormatError(path, f"{field} is missing", line=line)
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise CsvFormatError(path, f"{field} {shown!r} is not {expected}", line=line)


def _check_dates_agree(path: Path, dates: pd.Series, days: pd.DatetimeIndex) -> None:
    parsed = pd.to_datetime(dates, format="%d/%m/%Y", utc=True, errors="coerce")
    _raise_on_first_bad(path, dates, parsed.isna(), "date", "a date as DD/MM/YYYY")
    disagree = parsed.to_numpy() != days.to_numpy()
    if disagree.any():
        position = int(np.argmax(disagree))
        raise CsvFormatError(
            path,
            f"date {dates.iloc[position]!r} is not the UTC day of its timestamp "
            f"({days[position]:%d/%m/%Y})",
            line=int(dates.index[position]),
        )


def _check_step_matches_interval(path: Path, index: pd.DatetimeIndex, interval: str) -> None:
    """Catch a 1m file imported as 1h: the usual step between rows must be the interval."""
    if len(index) < 3:
        return
    steps = pd.Series(np.diff(index.asi8)).value_counts()
    usual = pd.Timedelta(int(steps.index[0]))
    expected = interval_timedelta(interval)
    if usual != expected:
        raise CsvFormatError(
            path, f"rows are usually {usual} apart, but the interval given is {interval}"
        )
