"""The workflow's admin pages run as many queries with 20 rows as with 2 (issue 15).

Each case renders a page with 2 rows of what it lists, adds 18 more, and renders it
again: a query per row (an N+1) makes the two counts differ and fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_results.models import TaskResult

from models_registry.models import (
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    RunStatus,
    ValidationRun,
)
from models_registry.services.audit import audit_event_record
from tests.registry.conftest import (
    OUT_OF_SAMPLE_FROM,
    finished_deployment,
    passing_paper_run,
    passing_validation_run,
)
from tests.support.walk import create_in

pytestmark = pytest.mark.django_db

FEW, MANY = 2, 20


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)


class Rows:
    """Adds ``n`` rows of what one page lists; ``url`` is that page."""

    def __init__(self, factory: Any, deployer: Any) -> None:
        self.factory = factory
        self.deployer = deployer
        self.live = factory(ModelState.IN_PRODUCTION)
        self.added = 0

    def version_rows(self, n: int) -> None:
        for _ in range(n):
            self.factory(ModelState.TRAINED)

    def audit_rows(self, n: int) -> None:
        for i in range(n):
            audit_event_record(
                event_type="host_check", actor=self.deployer, obj=self.live, data={"i": i}
            )

    def deployment_rows(self, n: int) -> None:
        for _ in range(n):
            finished_deployment(self.live, self.factory.production_target, self.deployer)

    def target_rows(self, n: int) -> None:
        for _ in range(n):
            self.added += 1
            target = DeploymentTarget.objects.create(
                name=f"production-extra-{self.added}", environment=Environment.PRODUCTION
            )
            finished_deployment(self.live, target, self.deployer)
            audit_event_record(
                event_type="host_check", actor=self.deployer, obj=target,
                data={"hosts": {}, "registry_sha256": self.live.onnx_sha256},
            )  # fmt: skip

    def history_rows(self, n: int) -> None:
        """Everything the version page lists about one version."""
        for _ in range(n):
            passing_validation_run(self.live)
            passing_paper_run(self.live)
            finished_deployment(self.live, self.factory.production_target, self.deployer)
            audit_event_record(event_type="host_check", actor=self.deployer, obj=self.live, data={})

    def scheduled_rows(self, n: int) -> None:
        """Scheduled re-validations, each with its task result: the health page's rows."""
        for _ in range(n):
            self.added += 1
            start = OUT_OF_SAMPLE_FROM + timedelta(days=100 + self.added)
            task_id = f"task-{self.added}"
            create_in(
                ValidationRun, RunStatus.PASSED,
                model_version=self.live, kind=ValidationRun.KIND_SCHEDULED,
                scheduled_slot=f"{start:%Y-%m-%d}", passed=True,
                window_start=start, window_end=start + timedelta(days=30), task_id=task_id,
                metrics={"sharpe": 1.0 + self.added / 10, "total_return": 0.01,
                         "max_drawdown": -0.02},
                gate_results=[{"name": "min_sharpe", "passed": True}],
            )  # fmt: skip
            TaskResult.objects.create(task_id=task_id, status="SUCCESS")


def page_url(rows: Rows, page: str) -> str:
    version_page = reverse("admin:models_registry_modelversion_change", args=[rows.live.pk])
    return {
        "index": reverse("admin:index"),
        "version list": reverse("admin:models_registry_modelversion_changelist"),
        "version page": version_page,
        "audit list": reverse("admin:models_registry_auditevent_changelist"),
        "deployment list": reverse("admin:models_registry_deployment_changelist"),
        "health page": reverse("admin:models_registry_modelversion_health", args=[rows.live.pk]),
    }[page]


ADDERS: dict[str, Callable[[Rows, int], None]] = {
    "index": Rows.target_rows,
    "version list": Rows.version_rows,
    "version page": Rows.history_rows,
    "audit list": Rows.audit_rows,
    "deployment list": Rows.deployment_rows,
    "health page": Rows.scheduled_rows,
}


@pytest.mark.parametrize("page", list(ADDERS))
def test_query_count_is_the_same_with_2_rows_as_with_20(
    page: str, superuser: Any, deployer: Any, version_factory: Any
) -> None:
    rows = Rows(version_factory, deployer)
    add = ADDERS[page]
    client = Client()
    client.force_login(superuser)
    url = page_url(rows, page)
    add(rows, FEW)
    client.get(url)  # warm per-process caches (content types, permissions)
    few = queries_for(client, url)
    add(rows, MANY - FEW)
    many = queries_for(client, url)
    assert many == few, f"{page}: {few} queries with {FEW} rows, {many} with {MANY}"


def test_the_health_page_charts_every_added_run(
    superuser: Any, deployer: Any, version_factory: Any
) -> None:
    """The constant count above is not bought by dropping rows: all 20 runs are drawn."""
    rows = Rows(version_factory, deployer)
    rows.scheduled_rows(MANY)
    client = Client()
    client.force_login(superuser)
    html = client.get(page_url(rows, "health page")).text
    assert f'data-points="{MANY}"' in html
    assert ModelVersion.objects.get(pk=rows.live.pk).validation_runs.count() > MANY


def test_live_targets_are_those_whose_latest_success_is_this_version_on_any_database(
    deployer: Any, version_factory: Any
) -> None:
    """One portable query (no DISTINCT ON): also runs on SQLite, the embedded default."""
    from models_registry.admin.cockpit import live_targets

    old = version_factory(ModelState.IN_PRODUCTION)
    new = version_factory(ModelState.APPROVED)
    other = DeploymentTarget.objects.create(name="production-b", environment=Environment.PRODUCTION)
    finished_deployment(old, other, deployer)
    assert [t.name for t in live_targets(old)] == ["production-b", "production-local"]
    finished_deployment(new, version_factory.production_target, deployer)
    assert [t.name for t in live_targets(old)] == ["production-b"]
    assert [t.name for t in live_targets(new)] == ["production-local", "staging-local"]
