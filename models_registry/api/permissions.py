"""Who may do what over the API: the token's user's roles, as in the admin, and nothing more.

Each view names the permission each of its actions needs (``action_permissions``); the
role that holds it is named in the refusal. A refused write is an audit event
(``api_action_refused``), like a forged admin form (``admin_action_refused``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from models_registry import roles
from models_registry.models import ApiToken
from models_registry.services.audit import audit_event_record


def role_holding(codename: str) -> str:
    """The role(s) that hold a permission, for the refusal's sentence."""
    holders = [role for role, perms in roles.ROLE_PERMISSIONS.items() if codename in perms]
    return " or ".join(holders) if holders else "a role that holds it"


def record_api_refusal(request: Request, *, action: str, reason: str, obj: Any = None) -> None:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    audit_event_record(
        event_type="api_action_refused",
        actor=request.user if token is not None else None,
        obj=obj,
        data={
            "action": action,
            "method": request.method,
            "path": request.path[:300],
            "token": token.prefix if token is not None else None,
            "reason": reason,
        },
    )


class HasApiToken(BasePermission):
    """Every API resource needs a valid token (the schema and docs pages do not)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiToken) and request.user is not None


class HoldsRolePermission(BasePermission):
    """The permission the view's ``action_permissions`` names for this action."""

    def has_permission(self, request: Request, view: Any) -> bool:
        action = getattr(view, "action", None) or request.method.lower()
        codename = getattr(view, "action_permissions", {}).get(action)
        if codename is None:
            return True
        user = request.user
        if user.has_perm(f"models_registry.{codename}"):
            return True
        reason = (
            f"{user.get_username()} may not {action.replace('_', ' ')}: it needs the "
            f"{role_holding(codename)} role ({codename})"
        )
        self.message = reason
        if request.method not in SAFE_METHODS:
            record_api_refusal(request, action=action, reason=reason)
        return False
