"""Refreshing market data on a schedule (registered hourly with django-celery-beat).

Idempotent and safe to overlap: each fetch asks only for what the store
lacks, every write merges under a per-file lock and replaces the file
atomically, so two runs at once store the same candles once.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from celery import shared_task
from django.conf import settings

from engine.data import DataError, fetch_klines, fetch_sentiment
from tradebot.queues import DEFAULT, queue_options

logger = logging.getLogger(__name__)

# With nothing stored yet, start this far back: the deployment guide asks for
# at least six months of history, a year covers more market conditions.
FIRST_FETCH = pd.Timedelta(days=365)


class MarketDataRefreshError(RuntimeError):
    """At least one series could not be refreshed; the message lists each failure."""


@shared_task(name="models_registry.refresh_market_data", **queue_options(DEFAULT))
def refresh_market_data() -> dict[str, Any]:
    """Fetch new closed candles for each configured symbol and the Fear & Greed index.

    Every series is attempted even when one fails; failures are then raised
    together so the task shows as failed, with what did succeed in the log.
    """
    data_dir = settings.TRADEBOT_DATA_DIR
    interval = settings.TRADEBOT_INTERVAL
    summary: dict[str, Any] = {"interval": interval, "candles": {}, "sentiment": None, "errors": []}
    for symbol in settings.TRADEBOT_SYMBOLS:
        try:
            fetched = fetch_klines(data_dir, symbol, interval, first_fetch_lookback=FIRST_FETCH)
            summary["candles"][symbol] = fetched.to_dict()
        except (DataError, ValueError) as exc:
            summary["errors"].append(f"{symbol} {interval}: {exc}")
    try:
        summary["sentiment"] = fetch_sentiment(data_dir).to_dict()
    except DataError as exc:
        summary["errors"].append(f"Fear & Greed: {exc}")
    logger.info("market data refresh: %s", summary)
    if summary["errors"]:
        raise MarketDataRefreshError("; ".join(summary["errors"]))
    return summary
