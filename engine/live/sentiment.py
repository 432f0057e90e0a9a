"""Fear & Greed for a live engine: refreshed from the API while it runs.

A replay has its whole series up front; a live engine must learn each new day's value as it
is published. The refresh is cheap (the last few weeks) and rate-limited to one request an
interval; a failed refresh keeps the series it has, and join_sentiment's max age turns a long
outage into NaN features (no decision, logged) rather than trading on a stale value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("engine.live")

REFRESH_SECONDS = 900.0
RECENT_DAYS = 30


class LiveSentiment:
    def __init__(
        self,
        initial: pd.Series | None = None,
        *,
        api_url: str | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        retry: Any | None = None,  # engine.data.RetryPolicy; default: 2 quick attempts
    ) -> None:
        self.series = initial
        self.retry = retry
        self.api_url = api_url
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._fetched_at: float | None = None

    def current(self) -> pd.Series | None:
        now = self.clock()
        if self._fetched_at is None or now - self._fetched_at >= self.refresh_seconds:
            self._fetched_at = now
            self._refresh()
        return self.series

    def _refresh(self) -> None:
        from engine.data import DataError, RetryPolicy, download_fear_greed

        try:
            recent = download_fear_greed(
                api_url=self.api_url,
                limit=RECENT_DAYS,
                retry=self.retry or RetryPolicy(max_attempts=2, base_delay=1.0, max_delay=5.0),
            )
        except (DataError, OSError) as exc:
            log.warning("Fear & Greed refresh failed, keeping the values known so far: %s", exc)
            return
        import pandas as pd  # sentiment models only: their series is a pandas Series

        if self.series is None or self.series.empty:
            self.series = recent
        else:
            merged = pd.concat([self.series, recent])
            self.series = merged[~merged.index.duplicated(keep="last")].sort_index()
        log.debug("Fear & Greed refreshed: latest %s", self.series.index[-1].date())
