"""{% audit_witness_home as audit %}: the scheduled audit check on the admin index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from models_registry.services.audit_witness import WITNESS_MISMATCH_EVENT, latest_witness_check

register = template.Library()
STALE_AFTER = timedelta(hours=3)


@register.simple_tag(takes_context=True)
def audit_witness_home(context: Any) -> dict[str, Any]:
    """The newest scheduled check of the chain against its witnesses, red on a mismatch."""
    user = context["request"].user
    if not user.has_perm("models_registry.view_auditevent"):
        return {"visible": False}
    event = latest_witness_check()
    if event is None:
        return {"visible": True, "checked": False}
    return {
        "visible": True,
        "checked": True,
        "mismatch": event.event_type == WITNESS_MISMATCH_EVENT,
        # The check is hourly: one missing for longer means beat or the workers stopped.
        "stale": timezone.now() - event.event_time > STALE_AFTER,
        "reason": event.data.get("reason", ""),
        "witnesses": event.data.get("witnesses_read", 0),
        "warnings": event.data.get("warnings", []),
        "at": event.event_time,
        "event": event,
    }
