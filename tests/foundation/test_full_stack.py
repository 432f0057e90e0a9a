"""The suite run by `make test` (and so CI) really uses PostgreSQL and Redis."""

from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings
from django.db import connection

full_stack = pytest.mark.skipif(
    os.environ.get("TRADEBOT_FULL_STACK") != "1",
    reason="only under `make test`, which provides the full stack",
)


@full_stack
@pytest.mark.django_db
def test_database_is_postgresql() -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


@full_stack
def test_broker_is_a_live_redis() -> None:
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    assert client.ping() is True
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > 65 * 60
