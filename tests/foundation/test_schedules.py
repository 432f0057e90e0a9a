"""The beat schedules exist once, name real tasks, and survive an operator's edits."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from models_registry.schedules import SCHEDULES
from tradebot.celery import app


def test_every_schedule_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    missing = [s.task for s in SCHEDULES if s.task not in app.tasks]
    assert missing == []


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent_and_keeps_edits() -> None:
    call_command("setup_periodic_tasks")
    first = dict(PeriodicTask.objects.values_list("name", "task"))
    assert {s.name for s in SCHEDULES} <= set(first)
    edited = PeriodicTask.objects.get(name="Refresh candles and sentiment")
    edited.enabled = False
    edited.save()
    call_command("setup_periodic_tasks")
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(
        SCHEDULES
    )
    assert PeriodicTask.objects.get(name="Refresh candles and sentiment").enabled is False
