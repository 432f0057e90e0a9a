"""OpenAPI additions: every operation's errors are RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

from models_registry.api.problems import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; `detail` is one readable sentence.",
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "What kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Per refused field (a field list), its messages.",
        },
    },
    "required": ["type", "title", "status", "detail"],
}
ERROR_STATUSES = {
    "400": "Invalid request: `errors` names each field.",
    "401": "No token, or an unknown, revoked or expired one.",
    "403": "The token's user lacks the role, or the act is a person's (approve, reject).",
    "404": "No such resource.",
    "409": "Refused by a lifecycle rule (state, window, busy target).",
    "422": "Upload refused by a check, or an Idempotency-Key reused with another request.",
    "429": "Rate limit of this token; see Retry-After.",
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def add_problem_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> Any:
    """drf-spectacular post-processing hook: a Problem component and problem responses."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code, description in ERROR_STATUSES.items():
                existing = responses.get(code)
                if existing is None or "content" not in existing:
                    responses[code] = {
                        "description": (existing or {}).get("description") or description,
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}},
                    }
            responses["default"] = {
                "description": "Any other error, as problem details.",
                "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}},
            }
            if method in WRITE_METHODS:
                parameters = operation.setdefault("parameters", [])
                parameters.append(
                    {
                        "in": "header",
                        "name": "Idempotency-Key",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": (
                            "Repeat a write safely: the same key with the same request gets "
                            "the first response again and creates nothing."
                        ),
                    }
                )
    return result
