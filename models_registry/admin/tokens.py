"""API tokens in the admin: each person creates and revokes their own (a superuser, anyone's).

The secret is shown once, on the page that answers the creation, and never stored: the
registry keeps its SHA-256 (models_registry.services.api_tokens). Tokens are never
edited or deleted; revoking one is an action, and both acts are audit events.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from models_registry.admin.cockpit import staff_user
from models_registry.models import ApiToken, RegistryError
from models_registry.services import api_tokens


class ApiTokenForm(forms.ModelForm):
    expires_at = forms.DateTimeField(
        required=False,
        help_text="UTC, ISO 8601. Empty: 90 days from now (setting TRADEBOT_API_TOKEN_DAYS).",
    )

    class Meta:
        model = ApiToken
        fields = ("user", "name", "expires_at")

    def __init__(self, *args: Any, request_user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_user = request_user
        user_field = self.fields.get("user")
        if not isinstance(user_field, forms.ModelChoiceField):
            return  # a token's own page: every field is read-only
        users = get_user_model().objects.filter(is_active=True)
        if request_user is not None and not request_user.is_superuser:
            users = users.filter(pk=request_user.pk)
            user_field.initial = request_user.pk
        user_field.queryset = users

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user = cleaned.get("user")
        if user is None or self.request_user is None:
            return cleaned
        expires_at = cleaned.get("expires_at") or api_tokens.default_expiry()
        cleaned["expires_at"] = expires_at
        problem = api_tokens.token_request_problem(
            user=user,
            name=cleaned.get("name") or "",
            created_by=self.request_user,
            expires_at=expires_at,
        )
        if problem:
            raise forms.ValidationError(problem)
        return cleaned


@admin.action(description="Revoke the selected tokens (at once; audited)")
def revoke_tokens(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    for token in queryset.order_by("id"):
        try:
            api_tokens.api_token_revoke(token=token, revoked_by=staff_user(request))
        except RegistryError as exc:
            messages.error(request, f"{token}: {exc}")
        else:
            messages.success(request, f"{token}: revoked")


class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = (
        "name", "user", "prefix", "status", "created_at", "expires_at", "last_used_at",
        "revoked_at",
    )  # fmt: skip
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    readonly_fields = (
        "user", "name", "prefix", "created_at", "created_by", "expires_at", "revoked_at",
        "revoked_by", "last_used_at",
    )  # fmt: skip
    actions = (revoke_tokens,)

    @admin.display(description="status")
    def status(self, obj: ApiToken) -> str:
        return (api_tokens.token_refusal(obj) and (
            "revoked" if obj.revoked_at else "expired" if obj.expires_at <= timezone.now()
            else "user inactive"
        )) or "active"  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        class WithUser(form_class):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, request_user=request.user, **inner)

        return WithUser

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        token, secret = api_tokens.api_token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            created_by=staff_user(request),
            expires_at=form.cleaned_data["expires_at"],
        )
        obj.pk = token.pk
        obj.prefix = token.prefix
        request._api_token_secret = secret  # type: ignore[attr-defined]

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # the audit trail holds the creation (api_token_created)

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: Any = None
    ) -> HttpResponse:
        """The secret, once: this page is the only place it is ever shown."""
        token = ApiToken.objects.select_related("user").get(pk=obj.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.model._meta,
            "token": token,
            "secret": getattr(request, "_api_token_secret", ""),
        }
        response = TemplateResponse(request, "admin/models_registry/apitoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response
