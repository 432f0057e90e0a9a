"""Errors raised by the data layer; each message names the file, line, symbol or check at fault.

``ValidationFailed`` carries a validation report, so it lives beside it in
``engine.data.validation`` (here it would close an import circle).
"""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Base class: anything the data layer refuses, with a message fit for a user."""


class CsvFormatError(DataError):
    """A CSV file cannot be read as candles or sentiment; names the file and, if known, the line."""

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class SourceError(DataError):
    """A remote source (Binance, Fear & Greed API) failed or answered something unusable."""


class UnknownSymbolError(SourceError):
    """Binance does not list the symbol."""

    def __init__(self, symbol: str, detail: str = "") -> None:
        self.symbol = symbol
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"Binance does not know the symbol {symbol!r}{suffix}")


class StoreEmptyError(DataError):
    """Nothing is stored for the requested series."""
