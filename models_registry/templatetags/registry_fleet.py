"""{% load registry_fleet %}{% fleet_home as fleet %}: the fleet table on the admin index."""

from __future__ import annotations

from typing import Any

from django import template

from models_registry.fleet import fleet_rows

register = template.Library()


@register.simple_tag(takes_context=True)
def fleet_home(context: Any) -> dict[str, Any]:
    user = context["request"].user
    if not user.has_perm("models_registry.view_deploymenttarget"):
        return {"rows": [], "visible": False}
    return {
        "rows": fleet_rows(),
        "visible": True,
        "can_check": user.has_perm("models_registry.deploy_modelversion"),
    }


@register.simple_tag(takes_context=True)
def inbox_home(context: Any) -> list[dict[str, Any]]:
    """{% inbox_home as inbox %}: what waits for the signed-in user's roles."""
    from models_registry.inbox import inbox_for

    return inbox_for(context["request"].user)
