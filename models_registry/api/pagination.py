"""Paging: cursors over ids (stable while rows are added; no COUNT over a large table).

A malformed ``page_size``, ``limit`` or ``offset`` is refused with 400 naming it, not
silently replaced by the default: a client that asked for something else should know.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.request import Request


def _count_param(request: Request, name: str, *, minimum: int, maximum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise exceptions.ValidationError(
            {name: [f"must be a whole number from {minimum} to {maximum}"]}
        )
    return int(raw)


class IdCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        asked = _count_param(request, "page_size", minimum=1, maximum=self.max_page_size)
        return asked if asked is not None else self.page_size

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == "page_size":
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class NamePagination(LimitOffsetPagination):
    """Model names are few and grouped, so limit/offset over the sorted names."""

    default_limit = 100
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        asked = _count_param(request, "limit", minimum=1, maximum=self.max_limit)
        return asked if asked is not None else self.default_limit

    def get_offset(self, request: Request) -> int:
        return _count_param(request, "offset", minimum=0, maximum=2**31 - 1) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1 if parameter["name"] == "limit" else 0
            parameter["schema"]["maximum"] = (
                self.max_limit if parameter["name"] == "limit" else 2**31 - 1
            )
        return parameters
