from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from models_registry.schedules import ensure_periodic_tasks


class Command(BaseCommand):
    help = (
        "Create the Celery beat schedules (hourly data refresh, daily re-validation of production "
        "models, weekly walk-forward report). Idempotent: existing schedules are left as edited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        results = ensure_periodic_tasks()
        if options["json"]:
            self.stdout.write(json.dumps([{"name": n, "created": c} for n, c in results]))
            return
        for name, created in results:
            self.stdout.write(f"{'created' if created else 'exists '}  {name}")
