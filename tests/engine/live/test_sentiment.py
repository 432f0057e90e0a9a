"""A live engine learns each new Fear & Greed value from the API (the fake one on loopback)."""

from __future__ import annotations

import logging

import pandas as pd

from engine.data import RetryPolicy
from engine.live.sentiment import LiveSentiment
from tests.fakes.fng_server import FakeFearGreedServer, IndexEntry
from tests.fakes.http_fake import html_error

DAY = 86_400
START = 1_714_521_600  # 2024-05-01 UTC


def test_refreshes_merges_and_keeps_values_through_an_outage(caplog) -> None:
    initial = pd.Series(
        [40.0, 41.0],
        index=pd.DatetimeIndex(["2024-05-01", "2024-05-02"], tz="UTC", name="date"),
        name="fear_greed",
    )
    now = [0.0]
    server = FakeFearGreedServer([IndexEntry(START + k * DAY, 50 + k) for k in range(1, 4)])
    with server:
        source = LiveSentiment(
            initial,
            api_url=server.url,
            refresh_seconds=60,
            clock=lambda: now[0],
            retry=RetryPolicy(max_attempts=2, sleep=lambda seconds: None),
        )
        first = source.current()
        now[0] = 30.0
        source.current()  # within the refresh period: no request
        requests_after_two_calls = len(server.requests_to("/fng/"))
        server.inject(html_error(502, path="/fng/", times=None))
        now[0] = 120.0
        with caplog.at_level(logging.WARNING, logger="engine.live"):
            during_outage = source.current()
    assert list(first.index.strftime("%Y-%m-%d")) == [
        "2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04",
    ]  # fmt: skip
    assert first.loc["2024-05-02"].item() == 51.0, "the published value wins over the initial one"
    assert requests_after_two_calls == 1
    assert during_outage.equals(first)
    assert "Fear & Greed refresh failed" in caplog.text
