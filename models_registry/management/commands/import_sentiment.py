"""import_sentiment PATH: a Fear & Greed CSV (or .csv.gz) into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from engine.data import import_sentiment_csv
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
        "Import the Fear & Greed index from a CSV file (timestamp,value,classification,date as "
        "alternative.me exports it; .gz read directly) into the store as a daily series."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="CSV or .csv.gz file")
        add_data_dir_argument(parser)
        add_policy_arguments(parser)
        add_json_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = data_dir_from(options)
        result = run_engine(
            lambda: import_sentiment_csv(options["path"], data_dir, policy=policy_from(options))
        )
        text = (
            f"Imported {result.report.rows} days from {result.path} into {result.merge.path}: "
            f"{result.merge.rows_added} new, {result.merge.rows_after} stored.\n"
            + report_lines(result.report)
        )
        emit(self, options, result.to_dict(), text)
