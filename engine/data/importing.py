"""CSV files into the store: parse, validate under the caller's policy, merge atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.csv_import import read_kline_csv, read_sentiment_csv
from engine.data.store import MergeResult, checked_symbol, merge_candles, merge_sentiment
from engine.data.validation import (
    ValidationPolicy,
    ValidationReport,
    apply_candle_policy,
    apply_sentiment_policy,
)


@dataclass
class ImportResult:
    path: Path
    report: ValidationReport
    merge: MergeResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows_read": self.report.rows,
            "rows_added": self.merge.rows_added,
            "rows_replaced": self.merge.rows_replaced,
            "rows_in_store": self.merge.rows_after,
            "store_file": str(self.merge.path),
            "validation": self.report.to_dict(),
        }


def import_klines_csv(
    path: Path | str,
    data_dir: Path | str,
    *,
    symbol: str,
    interval: str,
    policy: ValidationPolicy | None = None,
) -> ImportResult:
    """Import a kline CSV (plain or .gz). Nothing is written unless the whole file passes."""
    checked_symbol(symbol)
    path = Path(path)
    frame = read_kline_csv(path, interval)
    clean, report = apply_candle_policy(
        frame, interval, policy or ValidationPolicy(), source=str(path)
    )
    return ImportResult(path, report, merge_candles(data_dir, symbol, interval, clean))


def import_sentiment_csv(
    path: Path | str, data_dir: Path | str, *, policy: ValidationPolicy | None = None
) -> ImportResult:
    path = Path(path)
    series = read_sentiment_csv(path)
    clean, report = apply_sentiment_policy(series, policy or ValidationPolicy(), source=str(path))
    return ImportResult(path, report, merge_sentiment(data_dir, clean))
