from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.management.commands._deploy_common import get_target
from models_registry.models import RegistryError
from models_registry.services.host_checks import target_host_check


class Command(BaseCommand):
    help = (
        "Read every host's engine status and compare its live sha256 with what the registry says."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", required=True)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            # Recorded as a host_check audit event: the fleet home shows the last one.
            report, _ = target_host_check(
                target=get_target(options["target"]), actor=None, source="deployment_status"
            )
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            self.stdout.write(
                f"{report['target']}: registry says {report['registry_version'] or 'nothing'} "
                f"({(report['registry_sha256'] or '-')[:12]})"
            )
            if report["active_deployment"]:
                self.stdout.write(f"  deployment {report['active_deployment']} in progress")
            for label, host in report["hosts"].items():
                live = (host.get("live_sha256") or "-")[:12]
                files = (host.get("files_sha256") or "-")[:12]
                verdict = "ok" if host["matches_registry"] else "MISMATCH"
                if host.get("halted"):
                    verdict = "HALTED (kill switch latched: trading nothing)"
                if not host["matches_registry"] and host.get("serving_backup"):
                    verdict = (
                        f"serving backup {host['serving_version']} (the guide's manual "
                        "rollback; deploy or rollback_model to record it)"
                    )
                error = f"  error: {host['error']}" if host.get("error") else ""
                line = f"  {label:<24} live {live}  files {files}  {verdict}{error}"
                bad = host.get("halted") or not host["matches_registry"]
                self.stdout.write(self.style.ERROR(line) if bad else line)
                if host.get("costs_problem"):
                    self.stdout.write(self.style.ERROR(f"    COSTS: {host['costs_problem']}"))
                if host.get("costs_stale"):
                    self.stdout.write(self.style.WARNING(f"    costs: {host['costs_stale']}"))
            for pk in report["needs_attention"]:
                self.stdout.write(
                    self.style.ERROR(f"  deployment #{pk} NEEDS ATTENTION: host may not be serving")
                )
        if not options["json"]:
            for line in report.get("attention", []):
                if not line.startswith("deployment #"):  # printed above
                    self.stdout.write(self.style.ERROR(f"  NEEDS ATTENTION: {line}"))
        if report["needs_attention"]:
            ids = ", ".join(f"#{pk}" for pk in report["needs_attention"])
            raise CommandError(
                f"{report['target']}: deployment {ids} NEEDS ATTENTION (a rollback did not "
                "end with a healthy engine on the previous version)."
            )
        if report.get("attention"):
            raise CommandError(
                f"{report['target']}: NEEDS ATTENTION ({report['attention'][0]}); acknowledge "
                "it with acknowledge_attention once the hosts are repaired."
            )
        halted = sorted(label for label, host in report["hosts"].items() if host.get("halted"))
        if halted:
            raise CommandError(
                f"{report['target']}: engine HALTED by its kill switch on {', '.join(halted)}."
            )
        costs = sorted(
            label for label, host in report["hosts"].items() if host.get("costs_problem")
        )
        if costs:
            raise CommandError(
                f"{report['target']}: engine not trading at the shipped policy costs on "
                f"{', '.join(costs)}."
            )
        mismatched = [
            label
            for label, host in report["hosts"].items()
            if not host["matches_registry"] and not host.get("serving_backup")
        ]
        if mismatched:
            raise CommandError(
                f"{report['target']}: hosts do not all serve the registry's version."
            )
