"""System checks that `manage.py check --deploy` runs (tagged deploy, so only then)."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def audit_chain_is_witnessed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Production keeps its audit chain keyed and anchored outside the database.

    Without a key, anyone who can write the database rewrites events and recomputes every
    hash; without an anchor sink, deleting the newest events (or TRUNCATE) verifies OK.
    """
    from models_registry.services.audit_witness import is_production, production_audit_problems

    if not is_production():
        return []
    return [
        checks.Error(
            f"audit chain: {problem}.",
            hint="See docs/audit.md: production needs the audit key and an anchor sink; "
            "the production hosts then witness the chain head.",
            id="models_registry.E101",
        )
        for problem in production_audit_problems()
    ]
