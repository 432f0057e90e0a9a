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
from models_registry.models import RegistryError
from models_registry.services import deployments


class Command(BaseCommand):
    help = (
        "Roll a target back to the version that ran before the current one, or to --to-version N "
        "(one that ran on this target earlier), with the same checks as a deploy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", required=True)
        parser.add_argument("--to-version", type=int, default=None)
        parser.add_argument("--user", required=True, help="who asks for the rollback")
        parser.add_argument("--comment", required=True, help="why")
        parser.add_argument("--inline", action="store_true", help="run here instead of on a worker")
        parser.add_argument("--no-wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=600)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            deployment = deployments.rollback_request(
                target=get_target(options["target"]),
                requested_by=get_user(options["user"]),
                comment=options["comment"],
                to_version_number=options["to_version"],
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
