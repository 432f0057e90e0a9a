from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.management.commands._deploy_common import (
    get_target,
    get_user,
    print_result,
    progress_printer,
    run_or_wait,
)
from models_registry.models import ModelVersion, RegistryError
from models_registry.services import deployments


class Command(BaseCommand):
    help = (
        "Deploy an approved version to a production target (or a paper-tested one to staging): "
        "upload, verify, swap, restart, health check, automatic rollback on failure."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version is the model version; Django's own --version (its release) gives way.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="model name, e.g. btcusdt_sentiment")
        parser.add_argument("--version", dest="number", type=int, required=True)
        parser.add_argument(
            "--target", required=True, help="target name (or 'staging'/'production')"
        )
        parser.add_argument("--user", required=True, help="who asks for the deployment")
        parser.add_argument("--force-reason", default="", help="deploy outside the window: why")
        parser.add_argument(
            "--schedule", action="store_true", help="outside the window: schedule it"
        )
        parser.add_argument("--inline", action="store_true", help="run here instead of on a worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once")
        parser.add_argument("--timeout", type=float, default=600)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        version = ModelVersion.objects.filter(
            name=options["name"], version=options["number"]
        ).first()
        if version is None:
            raise CommandError(f"no version {options['name']} v{options['number']}.")
        try:
            deployment = deployments.deployment_request(
                model_version=version,
                target=get_target(options["target"]),
                requested_by=get_user(options["user"]),
                force_reason=options["force_reason"],
                schedule_if_closed=options["schedule"],
                enqueue=not options["inline"],
            )
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        deployment = run_or_wait(
            deployment,
            inline=options["inline"],
            wait=not options["no_wait"],
            timeout=options["timeout"],
            progress=progress_printer(self, options["json"]),
        )
        print_result(
            self,
            deployment,
            options["json"],
            steps_printed=not options["json"] and not options["no_wait"],
        )
