"""The validation policy in the admin: propose a change, and a second person confirms it.

Thin: the form parses, ``services.policies`` decides. A policy row is never changed or
deleted here; "Add" is a proposal (in force only after a different person confirms it with
the "Confirm" action), and the list shows what is in force and what waits.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from models_registry.models import PolicyConfirmation, ValidationPolicy
from models_registry.policy import (
    PolicyContentError,
    content_with,
    loosenings,
    policy_content_check,
    policy_in_force,
)
from models_registry.services.policies import (
    CONFIRM_PERMISSION,
    PROPOSE_PERMISSION,
    PolicyChangeRefused,
    validation_policy_confirm,
    validation_policy_propose,
)


class PolicyProposalForm(forms.ModelForm):
    content = forms.JSONField(
        help_text="The whole policy: fee_bps, slippage_bps, days, end, refit_folds, fold_days, "
        "dsr_benchmark, gates (validation, paper, drift) and plausibility. Pre-filled with the "
        "policy in force (a key it predates shown with what it meant then)."
    )

    class Meta:
        model = ValidationPolicy
        fields = ("scope", "label", "content", "comment")

    def clean_content(self) -> dict[str, Any]:
        try:
            return policy_content_check(self.cleaned_data["content"])
        except PolicyContentError as exc:
            raise forms.ValidationError(str(exc)) from exc


class ValidationPolicyAdmin(admin.ModelAdmin):
    form = PolicyProposalForm
    list_display = ("__str__", "in_force", "proposed_by", "proposed_at", "confirmed", "looser")
    list_filter = ("scope",)
    actions = ("confirm_proposals",)
    readonly_fields = ("content_hash", "number", "base", "seeded_from", "proposed_by")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(PROPOSE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_confirm_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CONFIRM_PERMISSION)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        scope = request.GET.get("scope", "")
        return {
            "scope": scope,
            "content": json.dumps(
                content_with(policy_in_force(scope).content, {}), indent=2, sort_keys=True
            ),
        }

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The service writes the row (number, base, hash, audit event); the admin only asks.
        try:
            proposal = validation_policy_propose(
                scope=form.cleaned_data.get("scope") or "",
                content=form.cleaned_data["content"],
                proposed_by=request.user,  # type: ignore[arg-type]
                label=form.cleaned_data.get("label") or "",
                comment=form.cleaned_data.get("comment") or "",
            )
        except PolicyChangeRefused as exc:
            raise forms.ValidationError(str(exc)) from exc
        obj.pk = proposal.pk
        obj.__dict__.update({k: v for k, v in proposal.__dict__.items() if k != "_state"})
        obj._state = proposal._state

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        self.message_user(
            request,
            f"{obj} proposed. It changes nothing until a second person confirms it.",
            messages.WARNING,
        )
        return self.response_post_save_add(request, obj)

    @admin.action(
        description="Confirm the selected proposals (a second person)", permissions=["confirm"]
    )
    def confirm_proposals(self, request: HttpRequest, queryset: QuerySet[ValidationPolicy]) -> None:
        for policy in queryset:
            try:
                validation_policy_confirm(policy=policy, confirmed_by=request.user)  # type: ignore[arg-type]
            except PolicyChangeRefused as exc:
                self.message_user(request, f"{policy}: refused: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{policy}: confirmed, now in force.", messages.SUCCESS)

    @admin.display(boolean=True, description="in force")
    def in_force(self, obj: ValidationPolicy) -> bool:
        return bool(policy_in_force(obj.scope).pk == obj.pk)

    @admin.display(description="confirmed")
    def confirmed(self, obj: ValidationPolicy) -> str:
        confirmation = PolicyConfirmation.objects.filter(policy=obj).first()
        if confirmation is None:
            return "waiting for a second person"
        who = confirmation.confirmed_by.get_username() if confirmation.confirmed_by else "seed"
        return f"{who}, {confirmation.confirmed_at:%Y-%m-%d %H:%M}"

    @admin.display(description="looser than the shipped defaults")
    def looser(self, obj: ValidationPolicy) -> str:
        found = loosenings(obj.content)
        if not found:
            return "—"
        return format_html(
            '<span style="color:#dc3545">{}</span>', "; ".join(item.text for item in found)
        )


def register(site: admin.AdminSite) -> None:
    site.register(ValidationPolicy, ValidationPolicyAdmin)
