"""The `--user` option every registry command shares: who is on record for the action."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import CommandError


def user_named(username: str | None, *, required_because: str | None = None) -> User | None:
    """The active user called ``username``; None when not given, unless ``required_because``."""
    if not username:
        if required_because:
            raise CommandError(f"--user is required: {required_because}")
        return None
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"--user: no user named {username!r} (no active user has that name)")
    return user
