"""fetch_klines BTCUSDT --interval 1h --since 2024-01-01: closed Binance candles into the store."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from engine.data import fetch_klines
from engine.dates import iso_date_argument
from models_registry.management.commands._data_common import (
    add_data_dir_argument,
    add_json_argument,
    add_policy_arguments,
    check_dates,
    data_dir_from,
    emit,
    policy_from,
    progress_bar,
    run_engine,
)


class Command(BaseCommand):
    help = (
        "Fetch closed candles from Binance (python-binance) into the store. Resumes after the "
        "last stored candle; --since is needed only for the first fetch or to extend backwards. "
        "Base URL: --api-url, else $TRADEBOT_BINANCE_API_URL, else https://api.binance.com."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol", help="e.g. BTCUSDT")
        parser.add_argument("--interval", required=True, help="e.g. 1h")
        parser.add_argument(
            "--since", type=iso_date_argument, default=None, help="UTC start, ISO 8601: 2024-01-01"
        )
        parser.add_argument(
            "--until", type=iso_date_argument, default=None, help="UTC end, exclusive; default now"
        )
        parser.add_argument("--api-url", default=None, help="Binance REST root URL")
        add_data_dir_argument(parser)
        add_policy_arguments(parser)
        add_json_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        check_dates(options, "since", "until")
        data_dir = data_dir_from(options)
        symbol = options["symbol"].upper()
        with progress_bar(options, f"{symbol} {options['interval']}") as progress:
            result = run_engine(
                lambda: fetch_klines(
                    data_dir,
                    symbol,
                    options["interval"],
                    since=options["since"],
                    until=options["until"],
                    api_url=options["api_url"],
                    policy=policy_from(options),
                    progress=progress,
                )
            )
        summary = result.to_dict()
        if result.candles_stored:
            text = (
                f"Stored {result.candles_stored} closed {symbol} {options['interval']} candles "
                f"({result.first_fetched} to {result.last_fetched}); "
                f"{summary['rows_in_store']} in the store."
            )
        else:
            text = f"{symbol} {options['interval']} is up to date: no new closed candles."
        if summary["gaps"]:
            text += f"\n  Binance's data has {summary['gaps']} gap(s): see data_report."
        emit(self, options, summary, text)
