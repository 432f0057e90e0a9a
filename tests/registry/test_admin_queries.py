"""Admin list pages run a fixed number of queries, however many rows there are."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from models_registry.models import ModelState
from models_registry.services.audit import audit_event_record
from tests.registry.conftest import finished_deployment, passing_validation_run

LIST_PAGES = (
    "admin:models_registry_modelversion_changelist",
    "admin:models_registry_deployment_changelist",
    "admin:models_registry_auditevent_changelist",
    "admin:models_registry_validationrun_changelist",
    "admin:models_registry_approval_changelist",
    "admin:models_registry_papertradingrun_changelist",
)


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def add_rows(version_factory: Any, deployer: Any, count: int) -> None:
    for _ in range(count):
        version = version_factory(ModelState.APPROVED)
        passing_validation_run(version)
        finished_deployment(version, version_factory.production_target, deployer)
        audit_event_record(event_type="host_check", actor=deployer, obj=version, data={"n": 1})


@pytest.mark.django_db
@pytest.mark.parametrize("page", LIST_PAGES)
def test_list_page_query_count_does_not_grow_with_rows(
    page: str, auditor: Any, deployer: Any, version_factory: Any
) -> None:
    client = Client()
    client.force_login(auditor)
    url = reverse(page)
    add_rows(version_factory, deployer, 2)
    client.get(url)  # warm per-process caches (content types, permissions)
    few = queries_for(client, url)
    add_rows(version_factory, deployer, 6)
    many = queries_for(client, url)
    assert many == few, f"{page}: {few} queries with few rows, {many} with more"


def add_history(version: Any, deployer: Any, count: int) -> None:
    for _ in range(count):
        passing_validation_run(version)
        audit_event_record(event_type="host_check", actor=deployer, obj=version, data={"n": 1})


@pytest.mark.django_db
@pytest.mark.parametrize("which", ["version_page", "approve_page", "rollback_page"])
def test_cockpit_pages_query_count_does_not_grow_with_history(
    which: str, approver: Any, deployer: Any, superuser: Any, version_factory: Any
) -> None:
    from models_registry.models import ModelVersion

    version = version_factory(ModelState.PAPER_TESTED)
    if which == "rollback_page":
        version_factory(ModelState.RETIRED)
        version = ModelVersion.objects.get(state=ModelState.IN_PRODUCTION)
    url = {
        "version_page": reverse("admin:models_registry_modelversion_change", args=[version.pk]),
        "approve_page": reverse(
            "admin:models_registry_version_action", args=[version.pk, "approve_versions"]
        ),
        "rollback_page": reverse(
            "admin:models_registry_version_action", args=[version.pk, "rollback_production"]
        ),
    }[which]
    client = Client()
    client.force_login(superuser)
    add_rows(version_factory, deployer, 1)
    add_history(version, deployer, 1)
    client.get(url)
    few = queries_for(client, url)
    add_rows(version_factory, deployer, 4)
    add_history(version, deployer, 5)
    many = queries_for(client, url)
    assert many == few, f"{which}: {few} queries with a short history, {many} with a longer one"
