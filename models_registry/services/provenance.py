"""Provenance: in staging and production every registration and training names its user.

A version with no recorded creator cannot be held to four eyes (nobody is known to be
barred from approving it), so there such a version is refused approval as well.
Development and test keep the anonymous paths (the demo, scripts, fixtures).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from models_registry.models import RegistryError

PROVENANCE_ENVIRONMENTS = frozenset({"staging", "production"})


class ProvenanceMissing(RegistryError):
    """Who did it is not recorded, where it must be."""


def provenance_required() -> bool:
    return getattr(settings, "ENVIRONMENT", "development") in PROVENANCE_ENVIRONMENTS


def refuse_anonymous(user: Any, *, what: str) -> None:
    """Raise ProvenanceMissing when `user` is nobody and this environment needs a name."""
    if not provenance_required():
        return
    if user is None or not getattr(user, "is_authenticated", False):
        raise ProvenanceMissing(
            f"{what} must name its user in {settings.ENVIRONMENT} (e.g. --user NAME): "
            "the record would not say who did it, and four eyes could not be checked."
        )


def refuse_approval_without_creator(version: Any) -> None:
    """In staging and production, a version whose creator is unknown is never approved."""
    if provenance_required() and version.created_by_id is None:
        raise ProvenanceMissing(
            f"{version} has no recorded creator, so four eyes cannot be checked: it cannot "
            f"be approved in {settings.ENVIRONMENT}. Register or train it again under a "
            "named user."
        )
