from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.management.commands._deploy_common import get_target
from models_registry.management.commands._users import user_named
from models_registry.models import RegistryError
from models_registry.services.attention import open_attention
from models_registry.services.attention_checks import target_attention_acknowledge


class Command(BaseCommand):
    help = (
        "Acknowledge that a target needing attention has been repaired: its hosts are read "
        "first, and only a target serving the registry's version everywhere is accepted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", required=True)
        parser.add_argument("--user", required=True, help="the deployer who checked the hosts")
        parser.add_argument("--comment", required=True, help="what was checked and repaired")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        target = get_target(options["target"])
        user = user_named(options["user"], required_because="an acknowledgement is signed.")
        assert user is not None  # required_because: a missing user is a CommandError
        before = open_attention(target)
        try:
            closed = target_attention_acknowledge(
                target=target, acknowledged_by=user, comment=options["comment"]
            )
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps({"target": target.name, "acknowledged": [f.pk for f in closed]})
            )
            return
        for line in before:
            self.stdout.write(f"  acknowledged: {line}")
        self.stdout.write(f"{target.name}: consistent, deploys accepted again.")
