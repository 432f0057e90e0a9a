"""Write docs/state-machines.md from the declared transition tables (or check it)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.state_machine_docs import DOC_PATH, render_state_machines


class Command(BaseCommand):
    help = (
        "Draw every status field's transition table (models_registry/transitions.py) into "
        "docs/state-machines.md, as mermaid graphs and tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="only check the file is up to date (exit 1 if not)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = render_state_machines()
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if options["check"]:
            if current != text:
                raise CommandError(
                    f"{DOC_PATH} is out of date: run `manage.py state_machines` to redraw it."
                )
            self.stdout.write(f"{DOC_PATH} is up to date.")
            return
        DOC_PATH.write_text(text)
        self.stdout.write(f"wrote {DOC_PATH}")
