"""Errors as RFC 9457 problem details: ``application/problem+json`` with one readable sentence.

Every error the API returns goes through ``problem_exception_handler`` (DRF's exception
handler setting) or ``problem_response`` (Django's own 404 under /api/), so a client
reads one shape: ``type`` (a URI naming the kind of problem, documented at that URI),
``title``, ``status``, ``detail`` and ``instance``; a refused field list adds ``errors``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from models_registry.models import RegistryError
from models_registry.safe_files import UnsafeInput
from models_registry.services.model_versions import ArtifactError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# slug -> (title, what it means): the documentation served at /api/problems/<slug>/.
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "invalid-request": (
        "Invalid request",
        "A parameter or field is missing or malformed; `errors` names each field.",
    ),
    "not-authenticated": (
        "Not authenticated",
        "Send `Authorization: Bearer <token>` with a token created in the admin.",
    ),
    "authentication-failed": (
        "Authentication failed",
        "The token is unknown, revoked or expired, or its user is inactive.",
    ),
    "permission-denied": (
        "Permission denied",
        "The token's user does not hold the role this needs (roles: ML engineer, Approver, "
        "Deployer, Auditor).",
    ),
    "approval-is-a-persons-act": (
        "Approvals are made in the admin",
        "Approve and reject are a person's decision, signed in to the admin; no token "
        "approves or rejects, a superuser's included.",
    ),
    "not-found": ("Not found", "No such resource, or the page cursor is not one the API gave."),
    "method-not-allowed": ("Method not allowed", "This resource does not take that method."),
    "not-acceptable": ("Not acceptable", "The API answers in JSON only."),
    "unsupported-media-type": (
        "Unsupported media type",
        "Send JSON (`application/json`), or `multipart/form-data` for an upload.",
    ),
    "conflict": (
        "Refused by a lifecycle rule",
        "The request is well formed but the registry's rules refuse it now (state, window, "
        "a busy target); the detail says which rule.",
    ),
    "registration-refused": (
        "Registration refused",
        "The uploaded model failed a check (size, metadata, ONNX check, lineage); nothing "
        "was stored.",
    ),
    "idempotency-key-reused": (
        "Idempotency key reused",
        "This Idempotency-Key was sent before with a different request; use a new key for "
        "a new request.",
    ),
    "rate-limited": ("Too many requests", "This token sent too many requests; wait and retry."),
    "request-too-large": (
        "Request too large",
        "The request's body (other than uploaded files) is larger than the server accepts.",
    ),
    "server-error": ("Server error", "Something failed inside the registry; it is logged."),
}


class ProblemResponse(Response):
    """A problem document, always JSON, whatever renderer the view chose for its success
    (the schema view answers YAML, the export CSV): the body matches its content type."""

    @property
    def rendered_content(self) -> Any:
        self.accepted_renderer = JSONRenderer()
        self.accepted_media_type = PROBLEM_CONTENT_TYPE
        return super().rendered_content


class ApprovalRefused(exceptions.PermissionDenied):
    """Approve and reject over the API: always refused (a person approves in the admin)."""

    problem_type = "approval-is-a-persons-act"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "this Idempotency-Key was used with a different request."
    problem_type = "idempotency-key-reused"


class LifecycleConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    problem_type = "conflict"


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    problem_type = "request-too-large"


class RegistrationRefused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem_type = "registration-refused"


_TYPE_BY_EXCEPTION: tuple[tuple[type[Exception], str], ...] = (
    (exceptions.ValidationError, "invalid-request"),
    (exceptions.ParseError, "invalid-request"),
    (exceptions.NotAuthenticated, "not-authenticated"),
    (exceptions.AuthenticationFailed, "authentication-failed"),
    (exceptions.PermissionDenied, "permission-denied"),
    (exceptions.NotFound, "not-found"),
    (exceptions.MethodNotAllowed, "method-not-allowed"),
    (exceptions.NotAcceptable, "not-acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported-media-type"),
    (exceptions.Throttled, "rate-limited"),
)


def problem_type_uri(request: HttpRequest | None, slug: str) -> str:
    path = f"/api/problems/{slug}/"
    return request.build_absolute_uri(path) if request is not None else path


def problem_body(
    request: HttpRequest | None,
    *,
    slug: str,
    status_code: int,
    detail: str,
    errors: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    title = PROBLEM_TYPES.get(slug, PROBLEM_TYPES["server-error"])[0]
    body: dict[str, Any] = {
        "type": problem_type_uri(request, slug),
        "title": title,
        "status": status_code,
        "detail": sentence(detail),
    }
    if request is not None:
        body["instance"] = request.path
    if errors:
        body["errors"] = errors
    return body


def sentence(text: str) -> str:
    """One readable sentence on one line, ending with a full stop. Not capitalised: a
    sentence may begin with a name (``erin``, ``btcusdt_price v3``) that must stay as it is."""
    text = " ".join(str(text).split()) or "The request was refused"
    return text if text.endswith((".", "?", "!")) else text + "."


def registry_exception(exc: RegistryError) -> exceptions.APIException:
    """A service's refusal as an HTTP error: a refused upload is 422, any other rule 409."""
    # An unsafe name, link or oversized file in an upload is a refused upload too (issue 26).
    if isinstance(exc, (ArtifactError, UnsafeInput)):
        return RegistrationRefused(detail=str(exc))
    return LifecycleConflict(detail=str(exc))


def _slug_for(exc: exceptions.APIException) -> str:
    explicit = getattr(exc, "problem_type", None)
    if explicit:
        return str(explicit)
    for klass, slug in _TYPE_BY_EXCEPTION:
        if isinstance(exc, klass):
            return slug
    return "invalid-request" if exc.status_code < 500 else "server-error"


def field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub": ["message", ...]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(field_errors(value, name))
        return flat
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            flat.update(field_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
        return flat
    items = detail if isinstance(detail, list) else [detail]
    return {prefix or "request": [str(item) for item in items]}


def _validation_detail(errors: dict[str, list[str]]) -> str:
    (first_field, messages), *rest = errors.items()
    head = messages[0].rstrip(".")
    where = "" if first_field in ("request", "non_field_errors") else f"{first_field}: "
    more = f" (and {len(rest)} more field{'s' if len(rest) > 1 else ''})" if rest else ""
    return f"{where}{head}{more}"


def _detail_text(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.Throttled):
        wait = (
            f" retry in {math.ceil(exc.wait)} seconds" if exc.wait is not None else " retry later"
        )
        return f"too many requests for this token;{wait}"
    detail = exc.detail
    if isinstance(detail, list | dict):
        return _validation_detail(field_errors(detail))
    return str(detail)


def api_exception_problem(exc: exceptions.APIException, request: HttpRequest | None) -> Response:
    errors = (
        field_errors(exc.detail)
        if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict | list)
        else None
    )
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    body = problem_body(
        request,
        slug=_slug_for(exc),
        status_code=exc.status_code,
        detail=_detail_text(exc),
        errors=errors,
    )
    return ProblemResponse(
        body, status=exc.status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE
    )


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every error, expected or not, as a problem document."""
    request = context.get("request")
    if isinstance(exc, RegistryError):
        exc = registry_exception(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "no such resource")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(
            f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; "
            "send models as multipart files"
        )
    elif isinstance(exc, SuspiciousOperation):
        # Django's refusals of a malformed request (too many fields, a bad header, ...).
        exc = exceptions.ParseError(str(exc) or "the request is malformed")
    if isinstance(exc, exceptions.APIException):
        # DRF's own handler adds WWW-Authenticate to a 401 and rolls back atomic requests.
        drf_response = exception_handler(exc, context)
        response = api_exception_problem(exc, request)
        if drf_response is not None and "WWW-Authenticate" in drf_response:
            response["WWW-Authenticate"] = drf_response["WWW-Authenticate"]
        return response
    logger.exception("API request failed: %s", getattr(request, "path", "?"))
    body = problem_body(
        request,
        slug="server-error",
        status_code=500,
        detail="the registry failed to answer this request; the error is logged",
    )
    return ProblemResponse(body, status=500, content_type=PROBLEM_CONTENT_TYPE)


def problem_response(
    request: HttpRequest, *, slug: str, status_code: int, detail: str
) -> JsonResponse:
    """A problem document outside DRF (Django's 404 for a path the API does not have)."""
    return JsonResponse(
        problem_body(request, slug=slug, status_code=status_code, detail=detail),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
