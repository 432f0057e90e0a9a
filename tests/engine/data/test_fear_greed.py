"""The Fear & Greed API client against the fake alternative.me server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests

from engine.data import (
    RetryPolicy,
    SourceError,
    download_fear_greed,
    fetch_sentiment,
    read_sentiment,
)
from tests.engine.data.conftest import SleepRecorder, snapshot
from tests.fakes.fng_server import FakeFearGreedServer, api_error, rate_limited
from tests.fakes.http_fake import html_error, slow


def test_fetch_stores_the_whole_history_as_a_daily_series_and_reports_gaps(
    fng: FakeFearGreedServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    result = fetch_sentiment(data_dir, api_url=fng.url, retry=fast_retry)
    assert fng.requests_to("/fng/")[0].query["limit"] == "0"
    series = read_sentiment(data_dir).frame
    assert series.name == "fear_greed"
    assert len(series) == 89  # 91 days less the two missing
    assert series.index.is_monotonic_increasing
    assert series.loc[pd.Timestamp("2024-01-01", tz="UTC")] == 20.0
    assert result.report.issues["gaps"].first == ["2024-02-10T00:00:00Z"]
    assert result.report.issues["gaps"].missing_rows == 2


def test_fetching_twice_is_idempotent(
    fng: FakeFearGreedServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    fetch_sentiment(data_dir, api_url=fng.url, retry=fast_retry)
    first = read_sentiment(data_dir).content_hash
    again = fetch_sentiment(data_dir, api_url=fng.url, retry=fast_retry)
    assert again.merge.rows_added == 0
    assert read_sentiment(data_dir).content_hash == first


def test_429_waits_for_retry_after(
    fng: FakeFearGreedServer, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    fng.inject(rate_limited(retry_after=4))
    series = download_fear_greed(api_url=fng.url, retry=fast_retry)
    assert sleeps.waits == [4.0]
    assert len(series) == 89


def test_html_error_page_is_retried_then_reported(
    fng: FakeFearGreedServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    fng.inject(html_error(502, path="/fng/", times=1))
    assert len(download_fear_greed(api_url=fng.url, retry=fast_retry)) == 89
    fng.inject(html_error(200, path="/fng/", times=None))
    with pytest.raises(SourceError, match="failed after 3 attempts: answer is not JSON: <html>"):
        fetch_sentiment(data_dir, api_url=fng.url, retry=fast_retry)
    assert snapshot(data_dir) == {}


def test_timeout_is_retried_then_reported(
    fng: FakeFearGreedServer, fast_retry: RetryPolicy
) -> None:
    fng.inject(slow(1.0, path="/fng/", times=1))
    assert len(download_fear_greed(api_url=fng.url, retry=fast_retry, timeout=0.2)) == 89
    fng.inject(slow(1.0, path="/fng/", times=None))
    with pytest.raises(SourceError, match="timed out"):
        download_fear_greed(api_url=fng.url, retry=fast_retry, timeout=0.2)


def test_an_error_in_the_metadata_is_reported(
    fng: FakeFearGreedServer, fast_retry: RetryPolicy
) -> None:
    fng.inject(api_error("Limit must be an integer"))
    with pytest.raises(SourceError, match="the API reports an error: Limit must be an integer"):
        download_fear_greed(api_url=fng.url, retry=fast_retry)


def test_base_url_comes_from_the_environment(
    fng: FakeFearGreedServer, monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    monkeypatch.setenv("TRADEBOT_FNG_API_URL", fng.url)
    assert len(download_fear_greed(retry=fast_retry)) == 89


def test_the_payload_is_the_real_api_shape(fng: FakeFearGreedServer) -> None:
    payload = requests.get(f"{fng.url}/fng/", params={"limit": 2}, timeout=5).json()
    assert payload["metadata"] == {"error": None}
    newest = payload["data"][0]
    assert set(newest) == {"value", "value_classification", "timestamp", "time_until_update"}
    assert int(payload["data"][0]["timestamp"]) > int(payload["data"][1]["timestamp"])
