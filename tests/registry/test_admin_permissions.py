"""Every role against every admin action, through the admin with CSRF checks on."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from models_registry.models import (
    Approval,
    AuditEvent,
    Deployment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    ValidationRun,
)

CHANGELIST = "admin:models_registry_modelversion_changelist"

# action -> (state the version must be in for it to apply, roles allowed)
ACTIONS: dict[str, tuple[str, set[str]]] = {
    "validate_versions": (ModelState.TRAINED, {"engineer"}),
    "paper_trade_versions": (ModelState.VALIDATED, {"engineer"}),
    "stage_versions": (ModelState.STAGED, {"engineer"}),
    "approve_versions": (ModelState.PAPER_TESTED, {"approver"}),
    "reject_versions": (ModelState.TRAINED, {"approver"}),
    "deploy_versions": (ModelState.APPROVED, {"deployer"}),
    "rollback_production": (ModelState.IN_PRODUCTION, {"deployer"}),
}
ROLES = ("engineer", "approver", "deployer", "auditor")
CONFIRMATION_ACTIONS = {
    "stage_versions",
    "approve_versions",
    "reject_versions",
    "deploy_versions",
    "rollback_production",
}


def csrf_client(user: Any) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    return client, page.cookies["csrftoken"].value


def record_counts() -> tuple[int, ...]:
    return (
        ValidationRun.objects.count(),
        PaperTradingRun.objects.count(),
        Deployment.objects.count(),
        Approval.objects.count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_permission_matrix(
    role: str, action: str, request: pytest.FixtureRequest, version_factory
) -> None:
    state, allowed_roles = ACTIONS[action]
    version = version_factory(state)
    user = request.getfixturevalue(role)
    client, token = csrf_client(user)
    before_counts, before_state = record_counts(), version.state

    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [version.pk], "csrfmiddlewaretoken": token},
    )

    allowed = role in allowed_roles
    offered = re.search(rf'<option value="{action}"', client.get(reverse(CHANGELIST)).text)
    assert bool(offered) == allowed
    if not allowed:
        assert response.status_code == 302
        assert record_counts() == before_counts
        assert ModelVersion.objects.get(pk=version.pk).state == before_state
        refusal = AuditEvent.objects.filter(event_type="admin_action_refused").first()
        assert refusal is not None and refusal.actor == user and refusal.data["action"] == action
    elif action in CONFIRMATION_ACTIONS:
        assert response.status_code == 200
        assert 'name="apply"' in response.text and version.onnx_sha256 in response.text
        assert record_counts() == before_counts  # nothing happens before confirmation
    else:
        assert response.status_code == 302
        assert record_counts() != before_counts  # a run was queued


@pytest.mark.django_db
def test_missing_csrf_token_is_refused_and_changes_nothing(approver, version_factory) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    client, _token = csrf_client(approver)
    response = client.post(
        reverse(CHANGELIST),
        {"action": "approve_versions", "_selected_action": [version.pk], "apply": "1",
         "comment": "looks fine"},
    )  # fmt: skip
    assert response.status_code == 403
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.PAPER_TESTED
    assert not Approval.objects.exists()


@pytest.mark.django_db
def test_approval_through_confirmation_page_records_the_decision(approver, version_factory) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    client, token = csrf_client(approver)
    response = client.post(
        reverse(CHANGELIST),
        {"action": "approve_versions", "_selected_action": [version.pk], "apply": "1",
         "comment": "backtest and paper run reviewed", "csrfmiddlewaretoken": token},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.APPROVED
    approval = Approval.objects.get(model_version=version)
    assert approval.decided_by == approver and approval.sha256 == version.onnx_sha256
    assert "approved" in response.text


@pytest.mark.django_db
def test_action_on_wrong_state_is_refused_per_object_and_audited(approver, version_factory) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    trained = version_factory(ModelState.TRAINED)
    client, token = csrf_client(approver)
    response = client.post(
        reverse(CHANGELIST),
        {"action": "approve_versions", "_selected_action": [staged.pk, trained.pk], "apply": "1",
         "comment": "batch", "csrfmiddlewaretoken": token},
        follow=True,
    )  # fmt: skip
    text = response.text.lower()  # the admin capitalises each message
    assert f"{staged}: approved" in text
    assert f"{trained}:" in text and "needs it to be paper_tested" in text
    assert ModelVersion.objects.get(pk=trained.pk).state == ModelState.TRAINED
    assert AuditEvent.objects.filter(
        event_type="model_version_approve_refused", actor=approver
    ).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_nobody_can_add_change_or_delete_registry_records(
    role: str, request, version_factory
) -> None:
    version = version_factory(ModelState.TRAINED)
    client, _token = csrf_client(request.getfixturevalue(role))
    for url in (
        reverse("admin:models_registry_modelversion_add"),
        reverse("admin:models_registry_modelversion_delete", args=[version.pk]),
        reverse("admin:models_registry_auditevent_add"),
    ):
        assert client.get(url).status_code in (302, 403)
    page = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.text
    assert "delete_selected" not in client.get(reverse(CHANGELIST)).text


@pytest.mark.django_db
def test_auditor_exports_audit_events_as_csv(auditor, version_factory) -> None:
    version_factory(ModelState.VALIDATED)
    client, token = csrf_client(auditor)
    events = list(AuditEvent.objects.order_by("id").values_list("pk", flat=True))
    response = client.post(
        reverse("admin:models_registry_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": events, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,event_time,event_type")
    assert len(lines) == len(events) + 1


@pytest.mark.django_db
def test_admin_shows_the_chain_status(auditor, version_factory) -> None:
    version_factory(ModelState.VALIDATED)
    client, _ = csrf_client(auditor)
    page = client.get(reverse("admin:models_registry_auditevent_verify"))
    assert page.status_code == 200
    assert "Intact:" in page.text


@pytest.mark.django_db
def test_version_page_shows_runs_history_and_comparison(engineer, version_factory) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    candidate = version_factory(ModelState.PAPER_TESTED)
    client, _ = csrf_client(engineer)
    page = client.get(reverse("admin:models_registry_modelversion_change", args=[candidate.pk]))
    text = page.text
    assert page.status_code == 200
    assert 'id="validation-runs"' in text and 'id="paper-runs"' in text
    assert "model_version_paper_tested" in text  # the state history from the audit trail
    assert f"Against the version in production ({live} on " in text
