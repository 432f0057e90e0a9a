"""``Authorization: Bearer <token>``: a user's API token (models_registry.services.api_tokens)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from models_registry.models import ApiToken
from models_registry.services import api_tokens

KEYWORD = b"bearer"


class TokenAuthentication(BaseAuthentication):
    """The token's user, with that user's roles; the token itself is ``request.auth``."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "the Authorization header must be 'Bearer <token>', with exactly one token"
            )
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("an API token is plain ASCII text") from exc
        token = api_tokens.api_token_for_secret(secret)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "this API token is not known: create one in the admin (API tokens)"
            )
        refusal = api_tokens.token_refusal(token)
        if refusal:
            raise exceptions.AuthenticationFailed(refusal)
        api_tokens.api_token_touch(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="tradebot"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "models_registry.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A user's API token, created in the admin (shown once).",
        }
