"""data_report BTCUSDT --interval 1h: what the store holds, its content hash and its problems."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from engine.data import (
    StoreEmptyError,
    candles_path,
    read_candles,
    read_sentiment,
    validate_candles,
    validate_sentiment,
)
from engine.dates import iso_date_argument
from models_registry.management.commands._data_common import (
    add_data_dir_argument,
    add_json_argument,
    check_dates,
    data_dir_from,
    emit,
    report_lines,
    run_engine,
)


class Command(BaseCommand):
    help = (
        "Report the stored candles of a symbol and interval (rows, range, content hash, gaps "
        "and other validation findings) and the stored Fear & Greed series."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol", help="e.g. BTCUSDT")
        parser.add_argument("--interval", required=True, help="e.g. 1h")
        parser.add_argument("--start", type=iso_date_argument, help="UTC start (inclusive)")
        parser.add_argument("--end", type=iso_date_argument, help="UTC end (exclusive)")
        add_data_dir_argument(parser)
        add_json_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        check_dates(options, "start", "end")
        data_dir = data_dir_from(options)
        symbol, interval = options["symbol"].upper(), options["interval"]
        candles = run_engine(
            lambda: read_candles(
                data_dir, symbol, interval, start=options["start"], end=options["end"]
            )
        )
        report = validate_candles(candles.frame, interval)
        summary: dict[str, Any] = {
            "symbol": symbol,
            "interval": interval,
            "file": str(candles_path(data_dir, symbol, interval)),
            "rows": len(candles.frame),
            "columns": list(candles.frame.columns),
            "content_hash": candles.content_hash,
            "validation": report.to_dict(),
            "sentiment": None,
        }
        lines = [
            f"{symbol} {interval}: {len(candles.frame)} candles, "
            f"{report.first_time} to {report.last_time}",
            f"  file: {summary['file']}",
            f"  content hash: {candles.content_hash}",
            report_lines(report),
        ]
        try:
            sentiment = read_sentiment(data_dir)
        except StoreEmptyError:
            lines.append("Fear & Greed: nothing stored")
        else:
            sentiment_report = validate_sentiment(sentiment.frame)
            summary["sentiment"] = {
                "days": len(sentiment.frame),
                "content_hash": sentiment.content_hash,
                "validation": sentiment_report.to_dict(),
            }
            lines.append(
                f"Fear & Greed: {len(sentiment.frame)} days, "
                f"{sentiment_report.first_time} to {sentiment_report.last_time}"
            )
            lines.append(report_lines(sentiment_report))
        emit(self, options, summary, "\n".join(lines))
