from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.models import ModelState, ModelVersion
from models_registry.services import monitoring


class Command(BaseCommand):
    help = (
        "Run the daily scheduled re-validation now (what Celery beat runs at 00:30 UTC): "
        "for every in-production version, or one. A slot already run returns its run; too few "
        "new bars give no run and say why. --walk-forward runs the weekly report instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", nargs="?", help="Model name, e.g. btcusdt_sentiment.")
        parser.add_argument(
            "--model-version",
            type=int,
            help="Version number (default: the in-production one(s)).",
        )
        parser.add_argument("--slot", help="Slot name (default: today's UTC date, or ISO week).")
        parser.add_argument(
            "--walk-forward",
            type=int,
            metavar="PARTS",
            help="Run the weekly walk-forward report with PARTS parts instead.",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        results = []
        for version in self._versions(options["model"], options["model_version"]):
            if options["walk_forward"]:
                result = monitoring.walk_forward_report(
                    model_version=version, parts=options["walk_forward"], slot=options["slot"]
                )
            else:
                slot = options["slot"] or monitoring.daily_slot()
                result = monitoring.scheduled_validation(model_version=version, slot=slot)
            results.append(result.to_dict())
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2))
            return
        if not results:
            self.stdout.write("no version in production: nothing to re-validate")
        for item in results:
            self.stdout.write(_line(item))

    def _versions(self, name: str | None, number: int | None) -> list[ModelVersion]:
        versions = ModelVersion.objects.all()
        if name:
            versions = versions.filter(name=name)
        if number is not None:
            if not name:
                raise CommandError("--model-version needs a model name")
            found = list(versions.filter(version=number))
            if not found:
                raise CommandError(f"no version {number} of {name}")
            return found
        chosen = list(versions.filter(state=ModelState.IN_PRODUCTION).order_by("name", "version"))
        if name and not chosen:
            raise CommandError(f"no version of {name} is in production; pass --model-version")
        return chosen


def _line(item: dict[str, Any]) -> str:
    head = f"{item['version']} [{item['slot']}]"
    run = item["run"]
    if run is None:
        return f"{head}: no run: {item['skipped']}"
    state = "new run" if item["created"] else "existing run"
    failed = f", failed: {', '.join(run['failed_gates'])}" if run["failed_gates"] else ""
    error = f", error: {run['error']}" if run["error"] else ""
    return (
        f"{head}: {state} #{run['id']} {run['status']} over {run['window_start']} to "
        f"{run['window_end']}{failed}{error}; health {item['health']}"
    )
