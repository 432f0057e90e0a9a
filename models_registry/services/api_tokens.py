"""API tokens: a user's key to the HTTP API, created and revoked in the admin (issue 30).

A token is a random secret shown once; the registry keeps only its SHA-256, so a copy of
the database does not hand out working tokens. A token acts as its user with that user's
roles, and nothing more. Creating and revoking one are audit events, each written in the
same transaction as the row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from models_registry.models import ApiToken, RegistryError
from models_registry.services.audit import audit_event_record

# Recognisable in a leaked log or a secret scanner's rules; the rest is 256 random bits.
SECRET_PREFIX = "tbt_"  # noqa: S105 -- a public marker, not a secret
SHOWN_PREFIX_LENGTH = 12
# last_used_at is a hint for whoever reviews tokens, not a log: one write a minute at most.
TOUCH_EVERY = timedelta(minutes=1)


class TokenRefused(RegistryError):
    """A token cannot be created or revoked as asked; the message says why."""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def default_expiry(now: datetime | None = None) -> datetime:
    days = int(getattr(settings, "TRADEBOT_API_TOKEN_DAYS", 90))
    return (now or timezone.now()) + timedelta(days=days)


def longest_expiry(now: datetime | None = None) -> datetime:
    days = int(getattr(settings, "TRADEBOT_API_TOKEN_MAX_DAYS", 365))
    return (now or timezone.now()) + timedelta(days=days)


def api_token_create(
    *,
    user: User,
    name: str,
    created_by: User,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it and its secret, which is never stored or shown again.

    A person creates tokens for themselves; only a superuser creates one for somebody else
    (e.g. a CI account), and the audit event names both.
    """
    now = timezone.now()
    expires_at = expires_at or default_expiry(now)
    problem = token_request_problem(
        user=user, name=name, created_by=created_by, expires_at=expires_at, now=now
    )
    if problem:
        raise TokenRefused(problem)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name.strip()[:100],
            prefix=secret[:SHOWN_PREFIX_LENGTH],
            key_hash=secret_hash(secret),
            created_by=created_by,
            expires_at=expires_at,
        )
        audit_event_record(
            event_type="api_token_created",
            actor=created_by,
            obj=token,
            data={
                "user": user.get_username(),
                "name": token.name,
                "prefix": token.prefix,
                "expires_at": expires_at.isoformat(),
            },
        )
    return token, secret


def token_request_problem(
    *, user: User, name: str, created_by: User, expires_at: datetime, now: datetime | None = None
) -> str | None:
    """Why this token may not be created, as one sentence; None if it may (the admin's form
    shows the sentence beside the field)."""
    now = now or timezone.now()
    if created_by.pk != user.pk and not created_by.is_superuser:
        return (
            f"{created_by.get_username()} may create tokens only for themselves, "
            f"not for {user.get_username()}."
        )
    if not user.is_active:
        return f"{user.get_username()} is not active; an API token would not work."
    if not name.strip():
        return "a token needs a name saying what uses it."
    if expires_at <= now:
        return "a token must expire in the future."
    if expires_at > longest_expiry(now):
        return (
            f"a token lives at most {getattr(settings, 'TRADEBOT_API_TOKEN_MAX_DAYS', 365)} days "
            "(setting TRADEBOT_API_TOKEN_MAX_DAYS)."
        )
    return None


def api_token_revoke(*, token: ApiToken, revoked_by: User) -> ApiToken:
    """Revoke a token at once: its next request is refused. Only its owner or a superuser."""
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if revoked_by.pk != locked.user_id and not revoked_by.is_superuser:
            raise TokenRefused(
                f"{revoked_by.get_username()} may revoke only their own tokens, "
                f"not {locked.user.get_username()}'s."
            )
        if locked.revoked_at is not None:
            raise TokenRefused(
                f"{locked} was already revoked at {locked.revoked_at:%Y-%m-%d %H:%M}."
            )
        locked.revoked_at = timezone.now()
        locked.revoked_by = revoked_by
        locked.save(update_fields=["revoked_at", "revoked_by"])
        audit_event_record(
            event_type="api_token_revoked",
            actor=revoked_by,
            obj=locked,
            data={"user": locked.user.get_username(), "name": locked.name, "prefix": locked.prefix},
        )
    return locked


def api_token_for_secret(secret: str) -> ApiToken | None:
    """The token whose secret this is (looked up by hash: the secret itself is not stored)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(key_hash=secret_hash(secret)).first()


def token_refusal(token: ApiToken, now: datetime | None = None) -> str | None:
    """Why this token may not be used now, as one sentence; None if it may."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        when = f"{token.revoked_at:%Y-%m-%d %H:%M}"
        return f"this API token ({token.prefix}…) was revoked at {when} UTC."
    if token.expires_at <= now:
        when = f"{token.expires_at:%Y-%m-%d %H:%M}"
        return f"this API token ({token.prefix}…) expired at {when} UTC."
    if not token.user.is_active:
        return f"the user of this API token ({token.user.get_username()}) is not active."
    return None


def api_token_touch(token: ApiToken, now: datetime | None = None) -> None:
    now = now or timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
