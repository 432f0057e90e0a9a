"""Refusals that happen before any lifecycle service is reached, recorded the same way
whether the admin, the API or a command was refused (one audit event each)."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import User

from models_registry.events import EventType
from models_registry.models import AuditEvent
from models_registry.services.audit import audit_event_record


def admin_action_refuse(*, actor: User | None, action: str, selected: Sequence[str]) -> AuditEvent:
    """A workflow action was posted by a user who does not hold its permission (a forged form)."""
    return audit_event_record(
        event_type=EventType.ADMIN_ACTION_REFUSED,
        actor=actor,
        data={
            "action": action,
            "selected": list(selected)[:50],
            "reason": "the user lacks the permission for this action",
        },
    )
