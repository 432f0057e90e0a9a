"""verify_audit_log: walk the hash chain of the audit trail and name the first broken row."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.services.audit_witness import WitnessedReport, verify_audit_chain_witnessed


class Command(BaseCommand):
    help = (
        "Verify the audit trail: recompute every event's hash in id order and check each "
        "event links to the one before it. Exits 1 and names the first broken event when "
        "a row was edited, deleted or inserted outside the application. The chain head "
        "is also checked against the anchor file and, by default, against the copy every "
        "production host holds (its witness): the database may not be behind, or disagree "
        "with, any of them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print a machine-readable JSON report only"
        )
        parser.add_argument(
            "--anchor",
            action="append",
            default=[],
            metavar="FILE",
            help="also check a chain-head anchor copied from a host (var/audit-anchor.json); "
            "repeatable. The AUDIT_ANCHOR_FILE setting's file is always checked.",
        )
        parser.add_argument(
            "--no-witnesses",
            action="store_true",
            help="do not read the production hosts' copies of the chain head (offline use; "
            "the output says so)",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=20_000,
            help="rows fetched per query (default 20000)",
        )

        parser.add_argument(
            "--export",
            metavar="FILE",
            help="re-check an admin export (CSV or JSON Lines) against the chain instead",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("export"):
            from models_registry.exports import check_export_command

            check_export_command(self, options["export"])
            return
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")
        started = time.monotonic()
        extra = []
        for name in options["anchor"]:
            try:
                extra.append((name, Path(name).read_text(encoding="utf-8")))
            except OSError as exc:
                raise CommandError(f"cannot read anchor {name}: {exc.strerror}") from exc
        report = verify_audit_chain_witnessed(
            chunk_size=options["chunk_size"],
            extra_anchors=extra,
            witnesses=not options["no_witnesses"],
        )
        seconds = time.monotonic() - started
        if options["json"]:
            self.stdout.write(json.dumps(_as_dict(report, seconds)))
        else:
            self.stdout.write(_as_text(report, seconds))
        if not report.ok:
            where = (
                f" at event #{report.chain.first_broken_id}" if report.chain.first_broken_id else ""
            )
            raise CommandError(f"audit chain broken{where}: {report.reason}", returncode=1)


def _as_dict(witnessed: WitnessedReport, seconds: float) -> dict[str, Any]:
    report = witnessed.chain
    return {
        "checked": report.checked,
        "first_broken_id": report.first_broken_id,
        "keyed": report.keyed,
        "anchors_checked": report.anchors_checked,
        "last_id": report.last_id,
        "seconds": round(seconds, 3),
        **witnessed.to_dict(),
    }


def _as_text(witnessed: WitnessedReport, seconds: float) -> str:
    report = witnessed.chain
    keyed = "HMAC-keyed" if report.keyed else "unkeyed (set AUDIT_HMAC_KEY_FILE)"
    witnesses = f"{witnessed.witnessed} witness host(s)"
    if witnessed.ok:
        line = (
            f"audit chain OK: {report.checked} events verified in {seconds:.1f} s "
            f"({keyed}; head matches {report.anchors_checked} anchor(s), "
            f"read from the anchor file and {witnesses})."
        )
    elif report.ok:
        line = f"audit chain NOT CONFIRMED: {witnessed.reason}."
    else:
        where = f" at event #{report.first_broken_id}" if report.first_broken_id else ""
        line = (
            f"audit chain BROKEN{where}: {report.reason}. "
            f"{report.checked} events before it verified ({keyed})."
        )
    return "\n".join([line, *(f"WARNING: {note}." for note in witnessed.warnings())])
