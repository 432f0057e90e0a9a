"""API tokens are created and revoked in the admin: the secret is shown once and stored only
as its SHA-256; both acts are audit events; a person manages only their own tokens."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from models_registry.models import ApiToken, AuditEvent
from models_registry.services import api_tokens
from tests.registry.conftest import make_user

ADD = "admin:models_registry_apitoken_add"
LIST = "admin:models_registry_apitoken_changelist"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_created_in_the_admin_the_secret_is_shown_once_and_stored_hashed(engineer: Any) -> None:
    client = signed_in(engineer)
    page = client.post(reverse(ADD), {"user": engineer.pk, "name": "ci-training", "expires_at": ""})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    secret = re.search(r'id="api-token-secret"[^>]*>(tbt_[^<]+)<', page.text).group(1)
    token = ApiToken.objects.get()
    assert token.user == engineer and token.key_hash == api_tokens.secret_hash(secret)
    assert secret not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    event = AuditEvent.objects.get(event_type="api_token_created")
    assert event.actor == engineer and event.data["prefix"] == secret[:12]
    assert secret not in str(event.data)
    # Never shown again: the list and the token's page show its prefix only.
    listing = client.get(reverse(LIST))
    assert token.prefix in listing.text and secret not in listing.text
    detail = client.get(reverse("admin:models_registry_apitoken_change", args=[token.pk]))
    assert detail.status_code == 200 and secret not in detail.text


@pytest.mark.django_db
def test_revoked_in_the_admin_with_an_audit_event(engineer: Any) -> None:
    token, _secret = api_tokens.api_token_create(user=engineer, name="ci", created_by=engineer)
    client = signed_in(engineer)
    client.post(
        reverse(LIST), {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True
    )
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == engineer
    assert AuditEvent.objects.get(event_type="api_token_revoked").actor == engineer
    assert api_tokens.token_refusal(token) is not None


@pytest.mark.django_db
def test_a_person_manages_only_their_own_tokens(engineer: Any, deployer: Any) -> None:
    theirs, _ = api_tokens.api_token_create(user=deployer, name="deploys", created_by=deployer)
    client = signed_in(engineer)
    page = client.post(reverse(ADD), {"user": deployer.pk, "name": "sneaky", "expires_at": ""})
    assert page.status_code == 200 and not ApiToken.objects.filter(name="sneaky").exists()
    assert theirs.prefix not in client.get(reverse(LIST)).text
    client.post(reverse(LIST), {"action": "revoke_tokens", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    with pytest.raises(api_tokens.TokenRefused, match="only their own"):
        api_tokens.api_token_revoke(token=theirs, revoked_by=engineer)
    # A superuser may create one for a CI account, on record under both names.
    admin = make_user("root_admin", superuser=True)
    robot = make_user("ci_robot")
    token, _ = api_tokens.api_token_create(user=robot, name="ci", created_by=admin)
    event = AuditEvent.objects.get(event_type="api_token_created", object_id=str(token.pk))
    assert event.actor == admin and event.data["user"] == "ci_robot"


@pytest.mark.django_db
def test_an_expiry_beyond_the_limit_or_in_the_past_is_refused(engineer: Any) -> None:
    client = signed_in(engineer)
    for when in ("2001-01-01T00:00:00Z", "2999-01-01T00:00:00Z"):
        page = client.post(reverse(ADD), {"user": engineer.pk, "name": "x", "expires_at": when})
        assert page.status_code == 200 and "errornote" in page.text
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(event_type="api_token_created").exists()
