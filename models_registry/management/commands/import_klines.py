"""import_klines PATH --symbol BTCUSDT --interval 1h: a kline CSV (or .csv.gz) into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from engine.data import import_klines_csv
from models_registry.management.commands._data_common import (
    add_data_dir_argument,
    add_json_argument,
    add_policy_arguments,
    data_dir_from,
    emit,
    policy_from,
    report_lines,
    run_engine,
)


class Command(BaseCommand):
    help = (
        "Import candles from a CSV file (shared-data layout date,open,high,low,close,volume, "
        "or Binance's kline CSV with or without header, ms or us timestamps; .gz read directly). "
        "The file is validated first; the store changes only if the import succeeds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="CSV or .csv.gz file")
        parser.add_argument("--symbol", required=True, help="e.g. BTCUSDT")
        parser.add_argument("--interval", required=True, help="e.g. 1h")
        add_data_dir_argument(parser)
        add_policy_arguments(parser)
        add_json_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = data_dir_from(options)
        result = run_engine(
            lambda: import_klines_csv(
                options["path"],
                data_dir,
                symbol=options["symbol"],
                interval=options["interval"],
                policy=policy_from(options),
            )
        )
        summary = {"symbol": options["symbol"], "interval": options["interval"], **result.to_dict()}
        text = (
            f"Imported {result.report.rows} rows from {result.path} into {result.merge.path}: "
            f"{result.merge.rows_added} new, {result.merge.rows_replaced} replaced, "
            f"{result.merge.rows_after} stored.\n" + report_lines(result.report)
        )
        emit(self, options, summary, text)
