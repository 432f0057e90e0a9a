"""The scheduled audit check: the chain against every production host's witness."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from models_registry.services.audit_witness import audit_witness_check
from tradebot.queues import DEFAULT, queue_options


@shared_task(name="models_registry.audit_witness_check", **queue_options(DEFAULT))
def audit_witness_check_task() -> dict[str, Any]:
    """Idempotent in effect: a second delivery records a second, equally true check."""
    report = audit_witness_check()
    return report.to_dict()
