"""Template filters for the admin: {% load registry_format %} then {{ x|pct }}, {{ t|utc }}."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import mark_safe

from models_registry import formatting

register = template.Library()


@register.filter
def pct(value: Any) -> str:
    return formatting.percent(value)


@register.filter
def num(value: Any) -> str:
    return formatting.number(value)


@register.filter
def utc(value: Any) -> str:
    return formatting.utc(value)


@register.filter
def kv(value: Any) -> str:
    # key_value_table escapes every key and value itself (format_html).
    return mark_safe(formatting.key_value_table(value))  # noqa: S308


@register.filter
def metric(value: Any, key: str) -> str:
    return formatting.metric(key, value)


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def label(value: Any) -> str:
    return formatting.metric_label(value)
