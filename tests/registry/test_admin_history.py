"""The auditor's deployment history: which version ran on a target from when to when."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from models_registry import formatting
from models_registry.models import Deployment, ModelState


@pytest.mark.django_db
def test_history_shows_when_each_version_ran_and_exports_it(auditor: Any, version_factory) -> None:
    retired = version_factory(ModelState.RETIRED)
    first, second = Deployment.objects.filter(target__environment="production").order_by("id")
    assert first.model_version == retired
    client = Client()
    client.force_login(auditor)

    page = client.get(reverse("admin:models_registry_deployment_changelist")).text

    # ISO in UTC, zone included (the column used to print a zone-less minute).
    ran = f"{formatting.utc(first.finished_at)} → {formatting.utc(second.finished_at)}"
    assert ran in page and "UTC → " in ran
    assert f"{formatting.utc(second.finished_at)} → now" in page

    # The export action takes every row the filter matches (this target's), not the ticks.
    response = client.post(
        reverse("admin:models_registry_deployment_changelist")
        + f"?target__id__exact={first.target_id}",
        {"action": "export_csv", "_selected_action": [first.pk],
         "csrfmiddlewaretoken": "unused-without-csrf-checks"},
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["version"] for r in rows] == [
        str(first.model_version.version),
        str(second.model_version.version),
    ]
    assert rows[0]["replaced_at"] == second.finished_at.isoformat(timespec="microseconds")
    assert rows[1]["replaced_at"] == ""
    assert rows[0]["approved_by"] and rows[0]["requested_by"]


@pytest.mark.django_db
def test_version_list_shows_training_progress(engineer: Any) -> None:
    import json

    from django_celery_results.models import TaskResult

    TaskResult.objects.create(
        task_id="a1b2c3d4-running",
        task_name="models_registry.train_model",
        status="PROGRESS",
        result=json.dumps({"epoch": 3, "total": 10, "loss": 0.00042}),
    )
    TaskResult.objects.create(
        task_id="e5f6a7b8-done",
        task_name="models_registry.train_model",
        status="SUCCESS",
        result=json.dumps({"model_version_id": 1, "name": "btcusdt_sentiment", "version": 4}),
    )
    client = Client()
    client.force_login(engineer)
    page = client.get(reverse("admin:models_registry_modelversion_changelist")).text
    assert "epoch 3 of at most 10, loss 0.00042" in page
    assert "btcusdt_sentiment v4 registered" in page
