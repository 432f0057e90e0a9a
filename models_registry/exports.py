"""Exports auditors can check: every row matching the admin's filter, streamed, CSV or JSON Lines.

Audit rows carry every field the row hash covers (``data`` as canonical JSON, the time
in UTC with microseconds), so anyone can re-hash a row and compare it with the chain;
``verify_export`` does exactly that against the database.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from models_registry.models import AuditEvent, DeploymentStatus
from models_registry.services.audit.canonical import canonical_json
from models_registry.services.audit.chain import compute_row_hash
from models_registry.services.audit.key import audit_hmac_key

FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}

AUDIT_COLUMNS = (
    "id", "event_time", "event_type", "actor_id", "actor_repr", "object_type", "object_id",
    "object_repr", "data", "prev_hash", "row_hash",
)  # fmt: skip

DEPLOYMENT_COLUMNS = (
    "id", "target", "model", "version", "kind", "status", "previous_version", "requested_by",
    "approved_by", "sha256", "started_at", "finished_at", "replaced_at", "duration_s", "error",
)  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def stream_rows(
    filename: str, columns: tuple[str, ...], rows: Iterable[dict[str, Any]], fmt: str
) -> StreamingHttpResponse:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")

    def as_csv() -> Iterator[str]:
        writer = csv.writer(_Echo())
        yield writer.writerow(columns)
        for row in rows:
            yield writer.writerow(
                [canonical_json(v) if isinstance(v, dict | list) else _text(v) for v in
                 (row[c] for c in columns)]
            )  # fmt: skip

    def as_jsonl() -> Iterator[str]:
        for row in rows:
            yield canonical_json({c: row[c] for c in columns}) + "\n"

    response = StreamingHttpResponse(
        as_csv() if fmt == "csv" else as_jsonl(), content_type=FORMATS[fmt]
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _iso(value)
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def audit_rows(queryset: QuerySet) -> Iterator[dict[str, Any]]:
    """Every event of the queryset in id order, keyset-paged: constant memory at 1e6 rows."""
    last_id = 0
    base = queryset.order_by("id")
    while True:
        chunk = list(base.filter(id__gt=last_id).values(*AUDIT_COLUMNS)[:2000])
        if not chunk:
            return
        for row in chunk:
            row["event_time"] = _iso(row["event_time"])
            yield row
        last_id = chunk[-1]["id"]


def deployment_rows(queryset: QuerySet) -> Iterator[dict[str, Any]]:
    for d in queryset.order_by("created_at", "id").iterator(chunk_size=2000):
        ran_until = getattr(d, "live_until", None)
        yield {
            "id": d.pk,
            "target": d.target.name,
            "model": d.model_version.name,
            "version": d.model_version.version,
            "kind": d.kind,
            "status": d.status,
            "previous_version": d.previous_version.version if d.previous_version else None,
            "requested_by": d.requested_by.get_username() if d.requested_by else None,
            "approved_by": d.approval.decided_by.get_username() if d.approval else None,
            "sha256": d.sha256,
            "started_at": _iso(d.started_at),
            "finished_at": _iso(d.finished_at),
            "replaced_at": _iso(ran_until) if d.status == DeploymentStatus.SUCCEEDED else None,
            "duration_s": d.duration_seconds,
            "error": d.error,
        }


# --- re-checking an export -------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    ok: bool
    checked: int
    first_bad_line: int | None = None
    first_bad_id: str | None = None
    reason: str = ""


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a CSV or JSON Lines export, as exported (``data`` parsed back from JSON)."""
    with path.open(encoding="utf-8", newline="") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first == "{":
            for line in handle:
                if line.strip():
                    yield json.loads(line)
            return
        for row in csv.DictReader(handle):
            row["data"] = json.loads(row["data"] or "{}")
            row["actor_id"] = int(row["actor_id"]) if row["actor_id"] else None
            yield row


def verify_export(path: Path) -> ExportReport:
    """Re-hash every exported row and compare with the chain in the database."""
    checked = 0
    try:
        for line, row in enumerate(read_export(path), start=2 if path.suffix == ".csv" else 1):
            problem = _row_problem(row)
            if problem:
                return ExportReport(False, checked, line, str(row.get("id")), problem)
            checked += 1
    except (KeyError, ValueError) as exc:
        return ExportReport(False, checked, None, None, f"not an audit export: {exc}")
    return ExportReport(True, checked)


def _row_problem(row: dict[str, Any]) -> str:
    recomputed = compute_row_hash(
        prev_hash=row["prev_hash"],
        event_time=datetime.fromisoformat(row["event_time"]),
        actor_id=row["actor_id"],
        actor_repr=row["actor_repr"],
        event_type=row["event_type"],
        object_type=row["object_type"],
        object_id=str(row["object_id"]),
        object_repr=row["object_repr"],
        data=row["data"],
        # A keyed chain's rows are HMACs under the configured key: hashing them without
        # it called every genuine export of a keyed chain "edited after export".
        key=audit_hmac_key(),
    )
    if recomputed != row["row_hash"]:
        return "the row's fields do not hash to its row_hash (edited after export)"
    stored = AuditEvent.objects.filter(pk=int(row["id"])).values_list("row_hash", flat=True).first()
    if stored is None:
        return "no event with this id in the audit chain"
    if stored != row["row_hash"]:
        return "the row differs from the event in the audit chain"
    return ""


def export_report_text(report: ExportReport) -> str:
    if report.ok:
        return f"export OK: {report.checked} rows match the audit chain."
    where = (
        f"line {report.first_bad_line} (event #{report.first_bad_id})"
        if report.first_bad_line
        else "the file"
    )
    return f"export differs at {where}: {report.reason}. {report.checked} rows before it match."


def check_export_command(command: Any, filename: str) -> None:
    """verify_audit_log --export FILE: one line, exit 1 naming the first row that differs."""
    from django.core.management.base import CommandError

    path = Path(filename)
    if not path.is_file():
        raise CommandError(f"--export: no such file {filename}")
    report = verify_export(path)
    command.stdout.write(export_report_text(report))
    if not report.ok:
        raise CommandError(export_report_text(report), returncode=1)
