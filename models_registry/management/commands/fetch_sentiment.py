"""fetch_sentiment: the Fear & Greed index history from its JSON API into the store."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from engine.data import fetch_sentiment
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
        "Fetch the whole Fear & Greed index (GET /fng/?limit=0) into the store. Base URL: "
        "--api-url, else $TRADEBOT_FNG_API_URL, else https://api.alternative.me."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--api-url", default=None, help="Fear & Greed API root URL")
        add_data_dir_argument(parser)
        add_policy_arguments(parser)
        add_json_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = data_dir_from(options)
        result = run_engine(
            lambda: fetch_sentiment(
                data_dir, api_url=options["api_url"], policy=policy_from(options)
            )
        )
        text = (
            f"Fetched {result.report.rows} days from {result.source}: "
            f"{result.merge.rows_added} new, {result.merge.rows_after} stored.\n"
            + report_lines(result.report)
        )
        emit(self, options, result.to_dict(), text)
