"""Training from the production control plane: the web queues onto the training queue; the
refusal to train lives on the worker that would train (production refuses, staging trains)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.urls import reverse

from engine.data.store import merge_candles
from models_registry.models import ModelVersion
from models_registry.services.training import TrainingRefused
from models_registry.tasks.training import train_model_task
from tests.registry.test_admin_permissions import csrf_client
from tradebot.celery import app

pytestmark = pytest.mark.slow

# The worker trains on 800 hours of it: tiny, as every training in the tests.
TINY = {"start": "2024-09-01", "end": "2024-10-04 08:00", "window": 12, "units": 8,
        "epochs": 1, "allow_short_history": True,
        "allow_missing_conditions": "tiny test data", "hold_out_days": 0}  # fmt: skip


def _store(settings: Any, tmp_path) -> None:
    """300 days of a noisy hourly walk: enough for the form's six-month check after the hold-out."""
    settings.TRADEBOT_DATA_DIR = tmp_path / "store"
    index = pd.date_range("2024-01-01", periods=300 * 24, freq="1h", tz="UTC", name="open_time")
    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))
    frame = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
         "volume": 1.0 + rng.random(len(index))},
        index=index,
    )  # fmt: skip
    merge_candles(settings.TRADEBOT_DATA_DIR, "BTCUSDT", "1h", frame)


@pytest.mark.django_db
def test_production_web_queues_training_a_production_worker_refuses_a_staging_worker_trains(
    engineer, settings, tmp_path, monkeypatch
) -> None:
    _store(settings, tmp_path)
    settings.ENVIRONMENT = "production"
    sent: list[dict[str, Any]] = []

    def capture(args=None, kwargs=None, **options):
        route = app.amqp.router.route(
            options, train_model_task.name, args, kwargs, task_type=train_model_task
        )
        sent.append({"args": args, "queue": route["queue"].name})

        class Result:
            id = "0123456789abcdef"

        return Result()

    monkeypatch.setattr(train_model_task, "apply_async", capture)
    client, token = csrf_client(engineer)
    form = {"symbol": "BTCUSDT", "kind": "price", "gap_policy": "refuse", "max_fill": 3,
            "epochs": 1, "csrfmiddlewaretoken": token}  # fmt: skip
    response = client.post(reverse("admin:models_registry_train"), form, follow=True)
    assert "training of BTCUSDT queued" in response.text
    [message] = sent
    assert message["queue"] == "training"
    symbol, options, user_id = message["args"]
    options = {**options, **TINY}
    monkeypatch.undo()

    # A worker of the production environment refuses the job it was given.
    refused = train_model_task.apply(args=[symbol, options, user_id])
    assert refused.failed() and isinstance(refused.result, TrainingRefused)
    assert not ModelVersion.objects.exists()

    # A training worker of the staging environment trains it.
    settings.ENVIRONMENT = "staging"
    trained = train_model_task.apply(args=[symbol, options, user_id])
    assert trained.successful(), trained.result
    version = ModelVersion.objects.get(pk=trained.result["model_version_id"])
    assert version.symbol == "BTCUSDT" and version.created_by_id == engineer.pk
