"""Validation policy changes: seeded once, then proposed by one person and confirmed by another.

Transitions (each one transaction, one audit event, literal event types):

- ``validation_policy_seed``: when the registry has no policy at all (its database was just
  created), the default policy, and one per model named in ``TRADEBOT_GATE_OVERRIDES`` /
  ``TRADEBOT_VALIDATION_POLICY_OVERRIDES``, from the environment or the shipped defaults.
  Event ``policy_seeded``. Never again once any policy exists.
- ``validation_policy_propose``: a new row (append-only, content-hashed) that changes
  nothing yet. Needs ``propose_validationpolicy``. Event ``policy_proposed``.
- ``validation_policy_confirm``: a second person (``confirm_validationpolicy``, never the
  proposer) puts the proposal in force, if the policy it was proposed against is still the
  one in force. Event ``policy_confirmed``, with the old and new content.

A proposal nobody confirms changes nothing: the policy in force is the newest confirmed one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from models_registry.models import PolicyConfirmation, ValidationPolicy
from models_registry.policy import (
    PolicyChangeRefused,
    PolicyContentError,
    policy_content_check,
    policy_content_hash,
    policy_name,
)

PROPOSE_PERMISSION = "models_registry.propose_validationpolicy"
CONFIRM_PERMISSION = "models_registry.confirm_validationpolicy"


def _require(user: User | None, permission: str, what: str) -> User:
    if user is None or not user.is_authenticated:
        raise PolicyChangeRefused(f"{what} needs a signed-in user; none was given")
    if not user.has_perm(permission):
        raise PolicyChangeRefused(f"{user.get_username()} lacks the permission to {what}")
    return user


def validation_policy_propose(
    *,
    scope: str,
    content: Any,
    proposed_by: User | None,
    label: str = "",
    comment: str = "",
) -> ValidationPolicy:
    """A new policy version for ``scope`` ("" the default); in force only once confirmed."""
    from models_registry.policy import policy_in_force
    from models_registry.services.audit import audit_event_record

    user = _require(proposed_by, PROPOSE_PERMISSION, "propose a validation policy")
    try:
        checked = policy_content_check(content)
    except PolicyContentError as exc:
        raise PolicyChangeRefused(f"policy refused: {exc}") from exc
    scope = (scope or "").strip()
    with transaction.atomic():
        current = policy_in_force(scope) if scope else policy_in_force("")
        # Lock the scope's rows so two proposals never take the same number.
        numbers = list(
            ValidationPolicy.objects.select_for_update()
            .filter(scope=scope)
            .values_list("number", flat=True)
        )
        policy = ValidationPolicy.objects.create(
            scope=scope,
            number=max(numbers, default=0) + 1,
            label=(label or "").strip() or (scope or "default"),
            content=checked,
            content_hash=policy_content_hash(checked),
            base=current,
            proposed_by=user,
            comment=comment,
        )
        audit_event_record(
            event_type="policy_proposed",
            actor=user,
            obj=policy,
            data={
                "scope": scope,
                "number": policy.number,
                "hash": policy.content_hash,
                "in_force": policy_name(current),
                "old": current.content,
                "new": checked,
                "comment": comment,
            },
        )
    return policy


def validation_policy_confirm(
    *, policy: ValidationPolicy, confirmed_by: User | None
) -> ValidationPolicy:
    """Put a proposal in force: a second person, against the policy it was proposed on."""
    from models_registry.policy import policy_in_force
    from models_registry.services.audit import audit_event_record

    user = _require(confirmed_by, CONFIRM_PERMISSION, "confirm a validation policy")
    with transaction.atomic():
        policy = ValidationPolicy.objects.select_for_update().get(pk=policy.pk)
        if PolicyConfirmation.objects.filter(policy=policy).exists():
            raise PolicyChangeRefused(f"{policy_name(policy)} is already confirmed")
        if policy.proposed_by_id is None:
            raise PolicyChangeRefused(f"{policy_name(policy)} has no proposer to confirm against")
        if policy.proposed_by_id == user.pk:
            raise PolicyChangeRefused(
                f"{user.get_username()} proposed {policy_name(policy)}: a second person must "
                "confirm it (four eyes)"
            )
        current = policy_in_force(policy.scope) if policy.scope else policy_in_force("")
        if policy.base_id is not None and current.pk != policy.base_id:
            raise PolicyChangeRefused(
                f"{policy_name(policy)} was proposed against another policy than the one in "
                f"force now ({policy_name(current)}): propose it again"
            )
        PolicyConfirmation.objects.create(policy=policy, confirmed_by=user)
        audit_event_record(
            event_type="policy_confirmed",
            actor=user,
            obj=policy,
            data={
                "scope": policy.scope,
                "number": policy.number,
                "hash": policy.content_hash,
                "proposed_by": policy.proposed_by.get_username() if policy.proposed_by else None,
                "old_policy": policy_name(current),
                "old": current.content,
                "new": policy.content,
            },
        )
    return policy
