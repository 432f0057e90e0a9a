"""Numbers, times and records as a person reads them on the admin pages (issue 15)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from models_registry.models import AuditEvent, ModelState, RunStatus, ValidationRun
from models_registry.services.audit import audit_event_record
from tests.registry.conftest import OUT_OF_SAMPLE_FROM, finished_deployment, passing_validation_run
from tests.support.walk import create_in

pytestmark = pytest.mark.django_db

# Django's English default would print "Dec. 3, 2026, 1:51 p.m.": no zone, no seconds.
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
RAW_JSON = re.compile(r'\{&quot;|\{"')


def page(user: Any, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.text


def test_deployment_list_shows_every_time_in_utc_with_the_zone(
    auditor: Any, deployer: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.TRAINED)
    finished = datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)
    finished_deployment(
        version, version_factory.production_target, deployer,
        started_at=finished - timedelta(seconds=20), finished_at=finished,
    )  # fmt: skip

    html = page(auditor, reverse("admin:models_registry_deployment_changelist"))

    assert "2024-03-01 12:29:45 UTC" in html  # started (Django's own column)
    assert "2024-03-01 12:30:05 UTC → now" in html  # ran on the target
    assert "p.m." not in html and "a.m." not in html


def test_validation_run_page_has_no_raw_json_and_reads_gate_values(
    engineer: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.TRAINED)
    run = passing_validation_run(
        version,
        config={"costs": {"fee": 0.001, "slippage": 0.0005}, "strategy": "ml_basic"},
        drift={"live": {"comparisons": []}},
        benchmark_metrics={"total_return": 0.0521},
        metrics={"sharpe": 0.49177330895795246, "total_return": -0.00003, "max_drawdown": -0.1234},
        gate_results=[
            {"name": "min_sharpe", "passed": True, "value": 0.49177330895795246,
             "threshold": 0.3},
            {"name": "max_drawdown", "passed": False, "value": -0.1234, "threshold": -0.1},
        ],
        exploratory_reasons=["costs differ from settings"],
        status=RunStatus.FAILED,
    )  # fmt: skip

    html = page(engineer, reverse("admin:models_registry_validationrun_change", args=[run.pk]))

    assert not RAW_JSON.search(html.split('id="content-main"', 1)[1]), "raw JSON on the page"
    assert "0.4918" in html and "0.49177330895795246" not in html  # Sharpe, gate value
    assert "-12.34 %" in html and "-10.00 %" in html  # drawdown gate value and threshold
    assert "-0.003 %" in html  # a small loss keeps three significant figures, not 0.00 %
    assert "5.21 %" in html  # the baseline's return
    assert "slippage" in html and "costs differ from settings" in html  # shown, as tables
    assert ISO_UTC.search(html)


def test_audit_event_page_shows_data_as_a_table(auditor: Any) -> None:
    audit_event_record(
        event_type="host_check", actor=auditor, data={"old_state": "staged", "detail": {"k": "v"}}
    )
    event = AuditEvent.objects.get(event_type="host_check")

    html = page(auditor, reverse("admin:models_registry_auditevent_change", args=[event.pk]))

    body = html.split('id="content-main"', 1)[1]
    assert not RAW_JSON.search(body)
    assert '<table class="kv">' in body and "old_state" in body and "staged" in body
    assert ISO_UTC.search(body)


def test_health_page_reads_returns_and_drawdowns_as_percentages(
    auditor: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.IN_PRODUCTION)
    start = OUT_OF_SAMPLE_FROM + timedelta(days=120)
    create_in(
        ValidationRun, RunStatus.PASSED,
        model_version=version, kind=ValidationRun.KIND_SCHEDULED, scheduled_slot="2024-05-01",
        passed=True, window_start=start,
        window_end=start + timedelta(days=30),
        metrics={"sharpe": 1.25, "total_return": -0.00003, "max_drawdown": -0.0456},
    )  # fmt: skip

    html = page(auditor, reverse("admin:models_registry_modelversion_health", args=[version.pk]))

    assert "-0.003 %" in html and "-4.56 %" in html and "1.25" in html
    assert f"{start:%Y-%m-%d %H:%M:%S} UTC" in html
