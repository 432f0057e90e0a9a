"""The Celery application: configured from Django settings under the CELERY_ namespace."""

from __future__ import annotations

import os

from engine.quiet import silence_tensorflow

# First, before a task module can import TensorFlow (workers, beat, and every Django
# process, since tradebot/__init__.py imports this app).
silence_tensorflow()

from celery import Celery  # noqa: E402
from kombu import Queue  # noqa: E402

from tradebot import queues  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")

app = Celery("tradebot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in queues.QUEUE_LIMITS]
app.conf.task_default_queue = queues.DEFAULT
app.conf.task_routes = (queues.route_by_declared_queue,)
# One message at a time per worker process: a training job must not sit
# reserved behind another hour-long job on the same worker.
app.conf.worker_prefetch_multiplier = 1
app.conf.task_time_limit = queues.QUEUE_LIMITS[queues.DEFAULT].hard_seconds
app.conf.task_soft_time_limit = queues.QUEUE_LIMITS[queues.DEFAULT].soft_seconds
app.autodiscover_tasks()


@app.task(name="tradebot.ping", **queues.queue_options(queues.DEFAULT))
def ping(value: str = "pong") -> str:
    """A health probe that also proves a round trip through the broker and result backend."""
    return value
