"""The "Event types" page for auditors: every catalogued audit event type, what it means
and how many events of it are on record (``admin:models_registry_auditevent_types``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from models_registry.models import AuditEvent
from models_registry.selectors import event_type_counts


def event_types_urls(admin_site: Any) -> list[Any]:
    return [
        path(
            "event-types/",
            admin_site.admin_view(lambda request: event_types_view(request, admin_site)),
            name="models_registry_auditevent_types",
        )
    ]


def event_types_view(request: HttpRequest, admin_site: Any) -> HttpResponse:
    if not request.user.has_perm("models_registry.view_auditevent"):
        raise PermissionDenied
    rows = event_type_counts()
    context = {
        **admin_site.each_context(request),
        "title": "Event types",
        "rows": rows,
        "total": sum(n for _, _, n in rows),
        "opts": AuditEvent._meta,
    }
    return TemplateResponse(request, "admin/models_registry/auditevent/event_types.html", context)
