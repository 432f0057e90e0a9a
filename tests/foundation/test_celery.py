"""Tasks go through a real worker and come back through django-celery-results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from celery import Celery
from django_celery_results.models import TaskResult

from tests.conftest import PROJECT_ROOT
from tradebot.celery import app, ping
from tradebot.config import broker_transport, broker_transport_options
from tradebot.queues import (
    QUEUE_LIMITS,
    broker_visibility_timeout,
    queue_options,
    route_by_declared_queue,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"),
    reason="needs the Redis broker the full stack provides (make test)",
)
def test_task_round_trip_through_redis_worker(celery_worker_factory) -> None:
    celery_worker_factory(queues="default")
    result = ping.delay("through redis")
    assert result.get(timeout=30) == "through redis"
    stored = TaskResult.objects.get(task_id=result.id)
    assert stored.status == "SUCCESS"
    assert stored.task_name == "tradebot.ping"
    assert stored.worker and stored.worker.startswith("w1@")


def test_task_round_trip_through_filesystem_broker(
    celery_worker_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery lets a CELERY_BROKER_URL variable override the broker given in code.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    var_dir = tmp_path / "var"
    celery_worker_factory(
        queues="default",
        env={"CELERY_BROKER_URL": "filesystem://", "TRADEBOT_VAR_DIR": str(var_dir)},
        name="fs",
    )
    folder = var_dir / "celery-broker"
    # Not the current app: shared tasks in later tests must keep sending through Redis.
    client = Celery(
        "tradebot-fs-client", broker="filesystem://", backend="django-db", set_as_current=False
    )
    # The same transport and folders as settings give the worker (kombu's default control
    # folder is a relative "control/": the source tree).
    client.conf.broker_transport = broker_transport("filesystem://")
    client.conf.broker_transport_options = broker_transport_options("filesystem://", folder=folder)
    result = client.send_task("tradebot.ping", args=["through files"], queue="default")
    assert result.get(timeout=30) == "through files"
    assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"
    assert not (PROJECT_ROOT / "control").exists()


def test_only_json_is_accepted() -> None:
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_long_queues_have_limits_and_visibility_timeout_outlasts_them() -> None:
    for queue in ("training", "backtest", "deploy"):
        options = queue_options(queue)
        assert options["declared_queue"] == queue
        declaring_task = type("DeclaringTask", (), options)()
        assert route_by_declared_queue("x", (), {}, {}, task=declaring_task) == {"queue": queue}
        assert options["soft_time_limit"] < options["time_limit"]
        assert options["acks_late"] is True
    assert route_by_declared_queue in app.conf.task_routes
    longest = max(limits.hard_seconds for limits in QUEUE_LIMITS.values())
    assert broker_visibility_timeout() > longest
    assert app.conf.worker_prefetch_multiplier == 1
    assert {q.name for q in app.conf.task_queues} == {"default", "training", "backtest", "deploy"}
