"""Witnesses of the audit chain off the control host: the production hosts.

The control host's own anchor file and key stop an intruder who holds only the database.
Someone with file access on the control host can empty or trim that file, or re-sign it
with the readable key. So every production host also holds the signed chain head (written
at each deploy and by the scheduled check), and verification reads those copies back
through ``deployment/``: the database may never be behind, or disagree with, any of them.

What this does and does not cover is written down in docs/audit.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from deployment.connection import open_connection
from deployment.witness import Connect, WitnessCopy, witness_read, witness_write
from models_registry.models import AuditEvent, DeploymentTarget
from models_registry.services.audit.anchors import anchor_text, audit_anchor_file
from models_registry.services.audit.chain import audit_event_record
from models_registry.services.audit.key import audit_hmac_key
from models_registry.services.audit.verify import ChainReport, verify_audit_chain

logger = logging.getLogger(__name__)

# Audit event types of this module (plain literals, for the event catalogue).
WITNESS_CHECKED_EVENT = "audit_witness_checked"
WITNESS_MISMATCH_EVENT = "audit_witness_mismatch"

UNANCHORED_WARNING = (
    "this chain is not anchored (no anchor file, no witness host): it cannot show "
    "truncation. Deleting its newest events, or all of them, still verifies OK"
)
UNKEYED_WARNING = (
    "this chain is not keyed (no AUDIT_HMAC_KEY_FILE): whoever can write the database "
    "can rewrite events and recompute every hash"
)


@dataclass(frozen=True)
class WitnessedReport:
    """The chain's verification against the anchor file and every witness host."""

    chain: ChainReport
    witnesses: list[WitnessCopy] = field(default_factory=list)
    # Witnesses that could not be read: the chain cannot be confirmed against them.
    unreadable: list[str] = field(default_factory=list)
    # Hosts that hold no witness yet (never deployed to, or emptied): a notice.
    empty: list[str] = field(default_factory=list)
    witnesses_skipped: bool = False
    # AUDIT_MIN_WITNESSES: how many witness hosts must answer. Set outside the database,
    # so an intruder who flips a target's environment there cannot make witnesses vanish.
    required: int = 0

    @property
    def reachable(self) -> int:
        return sum(1 for copy in self.witnesses if copy.error is None)

    @property
    def too_few(self) -> bool:
        return not self.witnesses_skipped and self.reachable < self.required

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.unreadable and not self.too_few

    @property
    def witnessed(self) -> int:
        return sum(1 for copy in self.witnesses if copy.error is None and copy.present)

    @property
    def anchored(self) -> bool:
        """Whether truncation could show at all: some anchor outside the table exists."""
        return self.chain.anchors_checked > 0 or self.witnessed > 0

    @property
    def reason(self) -> str:
        if not self.chain.ok:
            return self.chain.reason
        if self.unreadable:
            return "witness unreadable, the chain cannot be confirmed: " + "; ".join(
                self.unreadable
            )
        if self.too_few:
            return (
                f"only {self.reachable} witness host(s) answered and AUDIT_MIN_WITNESSES is "
                f"{self.required}: the chain cannot be confirmed (were production targets "
                "or hosts changed in the database?)"
            )
        return ""

    def warnings(self) -> list[str]:
        notes = []
        if not self.anchored:
            notes.append(UNANCHORED_WARNING)
        if not self.chain.keyed:
            notes.append(UNKEYED_WARNING)
        if self.witnesses_skipped:
            notes.append("witness hosts were not read (--no-witnesses)")
        notes += [f"{label} holds no witness yet" for label in self.empty]
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "anchored": self.anchored,
            "witnesses_read": self.witnessed,
            "witnesses_required": self.required,
            "witnesses_unreadable": list(self.unreadable),
            "witnesses_empty": list(self.empty),
            "warnings": self.warnings(),
        }


def witness_targets() -> list[DeploymentTarget]:
    """Production targets on other machines: a local target's "host" is the control host
    itself, which witnesses nothing the control host could not rewrite."""
    return list(
        DeploymentTarget.objects.filter(environment="production", is_local=False)
        .filter(hosts__enabled=True)
        .distinct()
        .order_by("id")
    )


def audit_witnesses_read(*, connect: Connect = open_connection) -> list[WitnessCopy]:
    from models_registry.services.deployments import DeploymentRefused, target_spec

    copies: list[WitnessCopy] = []
    for target in witness_targets():
        try:
            spec = target_spec(target)
        except DeploymentRefused as exc:
            copies.append(WitnessCopy(target.name, "(all hosts)", error=str(exc)))
            continue
        copies += witness_read(spec, connect=connect)
    return copies


def witness_anchor_sources(copies: Iterable[WitnessCopy]) -> list[tuple[str, str]]:
    """The (source, text) pairs verify_audit_chain reads as extra anchors."""
    sources = []
    for copy in copies:
        if copy.error is None and copy.present:
            sources.append((copy.source, copy.latest))
            sources.append((f"{copy.source} log", copy.log))
    return sources


def verify_audit_chain_witnessed(
    *,
    chunk_size: int = 20_000,
    extra_anchors: Iterable[tuple[str, str]] = (),
    witnesses: bool = True,
    connect: Connect = open_connection,
) -> WitnessedReport:
    """verify_audit_chain, with every production host's copy of the head as an anchor."""
    copies = audit_witnesses_read(connect=connect) if witnesses else []
    report = verify_audit_chain(
        chunk_size=chunk_size,
        extra_anchors=[*extra_anchors, *witness_anchor_sources(copies)],
    )
    return WitnessedReport(
        chain=report,
        witnesses=copies,
        unreadable=[f"{c.source}: {c.error}" for c in copies if c.error is not None],
        empty=[c.source for c in copies if c.error is None and not c.present],
        witnesses_skipped=not witnesses,
        required=min_witnesses(),
    )


def min_witnesses() -> int:
    return int(getattr(settings, "AUDIT_MIN_WITNESSES", 0) or 0)


def audit_witness_write(*, connect: Connect = open_connection) -> dict[str, str | None]:
    """Give every production host the current signed head; per host, None or the error."""
    from models_registry.services.deployments import DeploymentRefused, target_spec

    head = anchor_text()
    if head is None:
        return {}
    results: dict[str, str | None] = {}
    for target in witness_targets():
        try:
            spec = target_spec(target)
        except DeploymentRefused as exc:
            results[f"{target.name}/(all hosts)"] = str(exc)
            continue
        for host, error in witness_write(spec, head, connect=connect).items():
            results[f"{target.name}/{host}"] = error
    return results


def audit_witness_check(*, connect: Connect = open_connection) -> WitnessedReport:
    """The scheduled check: verify against every witness; on a mismatch tell the deployers
    and auditors (mail and webhook) and leave the witnesses as they are (they are the
    evidence); otherwise record the check and give the hosts the new head."""
    report = verify_audit_chain_witnessed(connect=connect)
    data = {**report.to_dict(), "checked": report.chain.checked, "last_id": report.chain.last_id}
    if not report.ok:
        event = _record_outcome(WITNESS_MISMATCH_EVENT, data)
        transaction.on_commit(lambda: notify_witness_mismatch(event.pk), robust=True)
        return report
    _record_outcome(WITNESS_CHECKED_EVENT, data)
    for host, error in audit_witness_write(connect=connect).items():
        if error is not None:
            logger.warning("audit witness on %s not written: %s", host, error)
    return report


def _record_outcome(event_type: str, data: dict[str, Any]) -> AuditEvent:
    from models_registry.services import notifications

    with transaction.atomic():
        event = audit_event_record(event_type=event_type, data=data)
        event_id = event.pk
        transaction.on_commit(lambda: notifications.webhook_queue(event_id), robust=True)
    return event


def notify_witness_mismatch(event_id: int) -> int:
    from models_registry.services.notifications import _send, deployers_emails, holders_emails

    event = AuditEvent.objects.get(pk=event_id)
    recipients = sorted({*deployers_emails(), *holders_emails("export_audit")})
    if not recipients:
        logger.error("audit chain mismatch and no deployer or auditor has an e-mail")
        return 0
    return _send(
        "[tradebot] AUDIT CHAIN MISMATCH: the database disagrees with its witnesses",
        (
            f"The scheduled audit check (event #{event.pk}) failed:\n"
            f"{event.data.get('reason')}\n\n"
            "Events may have been deleted or rewritten. The witness files on the hosts "
            "were left as they are. Run `manage.py verify_audit_log` and compare with the "
            "hosts' audit-anchor.log.\n"
        ),
        recipients,
    )


def latest_witness_check() -> AuditEvent | None:
    """The newest scheduled check, for the admin's home."""
    return (
        AuditEvent.objects.filter(event_type__in=(WITNESS_CHECKED_EVENT, WITNESS_MISMATCH_EVENT))
        .order_by("-id")
        .first()
    )


def production_audit_problems(
    *, key: Callable[[], bytes | None] = audit_hmac_key, anchor_file: Any = None
) -> list[str]:
    """What production lacks for a witnessed chain: the key and an anchor sink."""
    problems = []
    try:
        has_key = key() is not None
    except (OSError, ValueError) as exc:
        problems.append(f"the audit key cannot be read: {exc}")
        has_key = True
    if not has_key:
        problems.append("no audit key: set AUDIT_HMAC_KEY_FILE (a file outside the database)")
    if min_witnesses() < 1:
        problems.append(
            "AUDIT_MIN_WITNESSES is 0: set it to the number of production hosts that must "
            "answer (at least 1)"
        )
    sink = anchor_file if anchor_file is not None else audit_anchor_file()
    if sink is None:
        problems.append("no anchor sink: set AUDIT_ANCHOR_FILE (an append-only file)")
    elif not sink.parent.is_dir():
        problems.append(f"AUDIT_ANCHOR_FILE {sink}: its folder does not exist")
    return problems


def is_production() -> bool:
    return getattr(settings, "ENVIRONMENT", "development") == "production"
