"""register_model DIR: register a model trained elsewhere as a new ``trained`` version.

The folder holds ``<name>.onnx`` and ``<name>_metadata.json`` (and optionally the
training plot), as the training guide writes them. The ONNX file is untrusted:
its size is limited, and ``onnx.checker`` plus an ONNX Runtime load run in a
separate, time-limited process (``models_registry.onnx_check``) before anything
is stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.dates import iso_date_argument, parse_utc
from models_registry.management.commands._users import user_named
from models_registry.models import RegistryError
from models_registry.services.model_versions import model_version_register


class Command(BaseCommand):
    help = (
        "Register a model trained elsewhere: check DIR's ONNX file (size limit, onnx.checker "
        "and an ONNX Runtime load in a separate time-limited process) and its metadata, "
        "store them under their sha256 and create a 'trained' version (source: registered)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path, help="folder with <name>.onnx and its metadata")
        parser.add_argument(
            "--user",
            default=None,
            help="username of the person registering (recorded; barred from approving it)",
        )
        parser.add_argument(
            "--out-of-sample-from",
            type=iso_date_argument,
            default=None,
            help="UTC date/time the model is declared unseen from; refused unless it is the "
            "metadata's own first unseen bar (after its train, validation and test splits)",
        )
        parser.add_argument(
            "--allow-missing-conditions",
            default=None,
            metavar="REASON",
            help="register even if the training data lacks a market condition "
            "(TRADEBOT_MARKET_CONDITIONS); the written reason is an audit event",
        )
        parser.add_argument(
            "--json", action="store_true", help="print a machine-readable JSON result only"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = _registrant_named(options["user"])
        try:
            version, check = model_version_register(
                source_dir=options["dir"],
                registered_by=user,
                out_of_sample_from=_utc_or_none(options["out_of_sample_from"]),
                allow_missing_conditions=options["allow_missing_conditions"],
            )
        except RegistryError as exc:  # the service has recorded the refusal
            if options["json"]:
                self.stdout.write(json.dumps({"ok": False, "error": str(exc)}))
            raise CommandError(f"refused: {exc}") from exc
        result = {
            "ok": True,
            "id": version.pk,
            "name": version.name,
            "version": version.version,
            "state": version.state,
            "source": version.source,
            "onnx_sha256": version.onnx_sha256,
            "artifact_dir": version.artifact_dir,
            "inputs": check.get("inputs", []),
            "outputs": check.get("outputs", []),
            "lineage": version.metadata.get("lineage_check"),
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"registered {version} (id {version.pk}, state {version.state}, "
                f"sha256 {version.onnx_sha256}) in {version.artifact_dir}"
            )
            lineage = version.metadata.get("lineage_check") or {}
            if not lineage.get("verified", True):
                self.stdout.write(
                    "lineage NOT verified ("
                    + "; ".join(lineage.get("reasons") or [])
                    + f"): it is judged only on bars from {lineage.get('judged_from')}"
                )


def _registrant_named(username: str | None) -> User | None:
    user = user_named(username)
    if user is not None and not user.has_perm("models_registry.register_modelversion"):
        raise CommandError(f"--user {username!r} may not register models.")
    return user


def _utc_or_none(text: str | None) -> datetime | None:
    # iso_date_argument already checked and canonicalised the text.
    return parse_utc(text) if text else None
