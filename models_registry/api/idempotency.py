"""``Idempotency-Key``: a write repeated with the same key is done once.

The first request with a key runs and its response (success or refusal) is stored with
the key, the user and a hash of the request; a repeat with the same request gets that
response again (header ``Idempotent-Replayed: true``) and creates nothing; a repeat with
another request is refused (422). Two requests with one key at the same moment are
serialised by a lock on (user, key), so exactly one of them runs the write.

Nothing is stored for a request that failed inside the registry (a 5xx): it rolled back,
so repeating it is safe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from models_registry.api.problems import (
    PROBLEM_CONTENT_TYPE,
    IdempotencyKeyReused,
    ProblemResponse,
    api_exception_problem,
    registry_exception,
)
from models_registry.models import IdempotencyRecord, RegistryError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise exceptions.ValidationError(
            {HEADER: [f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters"]}
        )
    return key


def request_fingerprint(request: Request) -> str:
    """SHA-256 of what the request asks: method, path, query, fields and each file's content.

    A multipart body's boundary and a file's upload name are not part of it: the same
    files sent again by another client library are the same request.
    """
    digest = hashlib.sha256()
    digest.update(
        f"{request.method} {request.path}?{request.META.get('QUERY_STRING', '')}".encode()
    )
    fields: dict[str, Any] = {}
    data = request.data
    if hasattr(data, "lists"):
        fields = {key: values for key, values in data.lists() if key not in request.FILES}
    elif isinstance(data, dict):
        fields = data
    else:
        fields = {"_body": data}
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for name in sorted(request.FILES.keys()):
        for upload in request.FILES.getlist(name):
            file_digest = hashlib.sha256()
            upload.seek(0)
            for chunk in upload.chunks():
                file_digest.update(chunk)
            upload.seek(0)
            digest.update(f"\n{name}:{file_digest.hexdigest()}".encode())
    return digest.hexdigest()


def _lock(user_id: int, key: str) -> None:
    """Serialise requests with one (user, key) until commit (PostgreSQL; SQLite is serial)."""
    if connection.vendor == "postgresql":
        name = f"idempotency:{user_id}:{key}".encode()
        lock_id = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def _replay(record: IdempotencyRecord) -> Response:
    if record.status_code >= 400:
        response: Response = ProblemResponse(
            record.response, status=record.status_code, content_type=PROBLEM_CONTENT_TYPE
        )
    else:
        response = Response(record.response, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    location = record.response.get("url") if isinstance(record.response, dict) else None
    if location and record.status_code in (201, 202):
        response["Location"] = location
    return response


def _as_json(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data) or b"null")


def run_once(request: Request, write: Callable[[], Response]) -> Response:
    """Run ``write`` once per (user, Idempotency-Key); without the header, just run it."""
    key = idempotency_key(request)
    if key is None:
        return write()
    fingerprint = request_fingerprint(request)
    user = request.user
    with transaction.atomic():
        _lock(user.pk, key)
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {key[:40]!r} was first used for {existing.method} "
                    f"{existing.path} with another body; send a new key for a new request"
                )
            return _replay(existing)
        try:
            response = write()
        except RegistryError as exc:
            # Stored like a success: the refusal's own audit event commits with it.
            response = api_exception_problem(registry_exception(exc), request)
        except exceptions.APIException as exc:
            response = api_exception_problem(exc, request)
        if response.status_code < 500:
            IdempotencyRecord.objects.create(
                user=user,
                key=key,
                request_hash=fingerprint,
                method=request.method or "",
                path=request.path[:500],
                status_code=response.status_code,
                response=_as_json(response.data),
            )
    return response
