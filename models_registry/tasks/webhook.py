"""Lifecycle events to the operator's webhook, retried with backoff when it is down."""

from __future__ import annotations

from urllib.error import URLError

from celery import shared_task

from models_registry.services import notifications
from tradebot.queues import DEFAULT, queue_options


@shared_task(
    name="models_registry.send_webhook",
    autoretry_for=(URLError, OSError, TimeoutError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    **queue_options(DEFAULT),
)
def send_webhook(event_id: int) -> int:
    return notifications.webhook_send(event_id)
