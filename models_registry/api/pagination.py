"""Paging: cursors over ids (stable while rows are added; no COUNT over a large table)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, LimitOffsetPagination


class IdCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class NamePagination(LimitOffsetPagination):
    """Model names are few and grouped, so limit/offset over the sorted names."""

    default_limit = 100
    max_limit = 500
