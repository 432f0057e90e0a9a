"""The admin health page of a production version."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from models_registry import roles
from models_registry.models import ModelVersion
from models_registry.services import monitoring
from tests.monitoring.conftest import FAILING_GATES
from tests.registry.conftest import make_user
from tests.support.policy import adopt_settings_policy


@pytest.mark.django_db
def test_health_page_charts_runs_links_them_and_shows_the_suspension(
    production_version: ModelVersion, settings: Any
) -> None:
    settings.TRADEBOT_GATES = FAILING_GATES
    adopt_settings_policy()  # the policy is data (issue 25)
    run = monitoring.scheduled_validation_run(model_version=production_version, slot="2024-02-10")
    assert run is not None
    run.task_id = "task-123"
    run.save(update_fields=["task_id"])
    task = TaskResult.objects.create(task_id="task-123", status="SUCCESS")
    client = Client()
    client.force_login(make_user("otto_auditor", roles.AUDITOR))

    page = client.get(
        reverse("admin:models_registry_modelversion_health", args=[run.model_version_id])
    )

    assert page.status_code == 200
    html = page.content.decode()
    # Charts are inline SVG drawn from the run (no image, no matplotlib per request).
    assert "data:image/png" not in html
    assert html.count('<figure class="svg-chart" data-points="1">') >= 2  # Sharpe, return, ...
    assert "<polyline" in html
    assert "Degraded" in html and "Approval suspended" in html
    assert reverse("admin:models_registry_validationrun_change", args=[run.pk]) in html
    assert reverse("admin:django_celery_results_taskresult_change", args=[task.pk]) in html
    assert "drift_sharpe_drop" in html


@pytest.mark.django_db
def test_health_page_needs_view_permission(production_version: ModelVersion) -> None:
    client = Client()
    nobody = make_user("nora_nobody")
    client.force_login(nobody)
    url = reverse("admin:models_registry_modelversion_health", args=[production_version.pk])
    assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_health_page_without_runs_says_no_data_yet_instead_of_empty_charts(
    production_version: ModelVersion,
) -> None:
    client = Client()
    client.force_login(make_user("otto_auditor", roles.AUDITOR))
    url = reverse("admin:models_registry_modelversion_health", args=[production_version.pk])

    html = client.get(url).content.decode()

    assert "Sharpe: no data yet" in html and "Return: no data yet" in html
    assert "<polyline" not in html


def test_the_health_page_path_imports_no_matplotlib() -> None:
    import inspect

    from models_registry import svg_charts
    from models_registry.admin import health as admin_health

    for module in (admin_health, svg_charts):
        assert "matplotlib" not in inspect.getsource(module).split('"""', 2)[2]
