"""The periodic tasks Celery beat runs, kept in django-celery-beat's tables (editable in admin)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    minute: str
    hour: str = "*"
    day_of_week: str = "*"
    description: str = ""


SCHEDULES = (
    Schedule(
        name="Refresh candles and sentiment",
        task="models_registry.refresh_market_data",
        minute="5",
        description="Hourly, five minutes past, once the last hour's candle has closed.",
    ),
    Schedule(
        name="Re-validate production models",
        task="models_registry.revalidate_production",
        minute="30",
        hour="0",
        description="Daily: every in-production version on the bars since its last validation.",
    ),
    Schedule(
        name="Start scheduled deployments",
        task="models_registry.start_scheduled_deployments",
        minute="*",
        description="Every minute: queue deployments whose deployment window has opened.",
    ),
    Schedule(
        name="Collect forward paper runs",
        task="models_registry.collect_forward_runs",
        minute="*",
        description=(
            "Every minute: read each staged version's journal from its staging hosts, record "
            "the forward run's progress, and judge it by the paper gates once its period ends."
        ),
    ),
    Schedule(
        name="Reconcile abandoned deployments",
        task="models_registry.reconcile_deployments",
        minute="*/10",
        description="Finish deployments left running by a killed worker, from the hosts' state.",
    ),
    Schedule(
        name="Reconcile stuck runs and deployments",
        task="models_registry.reconcile_jobs",
        minute="*/5",
        description=(
            "Every five minutes: end runs and deployments stuck past their lease "
            "(queued with no task, or running on a dead worker), each with an audit event."
        ),
    ),
    Schedule(
        name="Check production hosts against the registry",
        task="models_registry.check_production_hosts",
        minute="*/15",
        description=(
            "Every 15 minutes: each production host's serving sha256 against the registry's; "
            "a mismatch or a halted engine blocks the target until a deployer acknowledges it."
        ),
    ),
    Schedule(
        name="Check the audit chain against its witnesses",
        task="models_registry.audit_witness_check",
        minute="17",
        description=(
            "Hourly: verify the audit chain against every production host's copy of its "
            "head; on a mismatch mail and webhook the deployers and auditors, else give "
            "the hosts the new head."
        ),
    ),
    Schedule(
        name="Sweep stale training folders",
        task="models_registry.sweep_temp_folders",
        minute="43",
        description=(
            "Hourly, on the training queue: remove tradebot-training-* and "
            "tradebot-register-* folders older than the training hard limit and held by no "
            "live process (workers also sweep at start)."
        ),
    ),
    Schedule(
        name="Walk-forward stability report",
        task="models_registry.walk_forward_report",
        minute="0",
        hour="3",
        day_of_week="1",
        description="Weekly, Monday 03:00 UTC, per production model.",
    ),
)


def ensure_periodic_tasks() -> list[tuple[str, bool]]:
    """Create the schedules that are missing; leave ones an operator edited alone."""
    results = []
    with transaction.atomic():
        for schedule in SCHEDULES:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=schedule.minute,
                hour=schedule.hour,
                day_of_week=schedule.day_of_week,
                day_of_month="*",
                month_of_year="*",
                timezone="UTC",
            )
            _, created = PeriodicTask.objects.get_or_create(
                name=schedule.name,
                defaults={
                    "task": schedule.task,
                    "crontab": crontab,
                    "description": schedule.description,
                },
            )
            results.append((schedule.name, created))
    return results
