"""Set the validation policy in force the way people do: one proposes, a second confirms.

The environment (``TRADEBOT_GATES`` and friends) only seeds the first policy, so a test that
wants other gates or costs puts them in force through the four-eyes transitions.
``adopt_settings_policy()`` does that for whatever a test set in its settings, so the
registry and this process agree (a run from a process that disagrees is exploratory).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from models_registry.models import ValidationPolicy
from models_registry.policy import content_with, policy_in_force, settings_policy_overrides
from models_registry.services.policies import validation_policy_confirm, validation_policy_propose

# The shipped policy judges a version on 3 re-fitted folds of 290 days (#28): 870 days of bars
# that a test's tiny store does not hold. A test on such a store says so by judging on one
# window; every page it renders lists that as looser than the shipped defaults.
ONE_WINDOW: dict[str, Any] = {"refit_folds": 0}


def policy_people() -> tuple[User, User]:
    """Two different people who may propose and confirm (the admin's superusers)."""
    first, _ = User.objects.get_or_create(
        username="policy-proposer", defaults={"is_staff": True, "is_superuser": True}
    )
    second, _ = User.objects.get_or_create(
        username="policy-confirmer", defaults={"is_staff": True, "is_superuser": True}
    )
    return first, second


def policy_set(dotted: dict[str, Any], *, scope: str = "", label: str = "test") -> ValidationPolicy:
    """Put in force the policy in force for ``scope`` with ``dotted`` keys replaced."""
    proposer, confirmer = policy_people()
    content = content_with(policy_in_force(scope).content, dotted)
    policy = validation_policy_propose(
        scope=scope, content=content, proposed_by=proposer, label=label
    )
    return validation_policy_confirm(policy=policy, confirmed_by=confirmer)


def gates_dotted(gates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        f"gates.{stage}.{name}": value
        for stage, thresholds in gates.items()
        for name, value in thresholds.items()
    }


def adopt_settings_policy() -> None:
    """Put in force what this process's settings say, for the default and each named model."""
    said = settings_policy_overrides(None)
    if said:
        policy_set(said, label="from test settings")
    names = set(getattr(settings, "TRADEBOT_GATE_OVERRIDES", {}) or {}) | set(
        getattr(settings, "TRADEBOT_VALIDATION_POLICY_OVERRIDES", {}) or {}
    )
    for name in sorted(names):
        policy_set(settings_policy_overrides(name), scope=name, label="from test settings")
