"""The Crypto Fear & Greed index from alternative.me's JSON API (``/fng/?limit=0``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from engine.data.errors import SourceError
from engine.data.frames import SENTIMENT_INDEX_NAME, SENTIMENT_NAME
from engine.data.retry import Retry, RetryPolicy, call_with_retries, retry_after_seconds
from engine.data.store import MergeResult, merge_sentiment
from engine.data.validation import ValidationPolicy, ValidationReport, apply_sentiment_policy

ENV_FNG_API_URL = "TRADEBOT_FNG_API_URL"
DEFAULT_FNG_API_URL = "https://api.alternative.me"


@dataclass
class SentimentResult:
    source: str
    report: ValidationReport
    merge: MergeResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "days_read": self.report.rows,
            "days_in_store": self.merge.rows_after,
            "days_added": self.merge.rows_added,
            "first_day": self.report.first_time,
            "last_day": self.report.last_time,
            "validation": self.report.to_dict(),
        }


def fng_api_url(api_url: str | None = None) -> str:
    """Root URL of the index API: the argument, else $TRADEBOT_FNG_API_URL, else alternative.me."""
    return (api_url or os.environ.get(ENV_FNG_API_URL) or DEFAULT_FNG_API_URL).rstrip("/")


def download_fear_greed(
    *,
    api_url: str | None = None,
    limit: int = 0,
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> pd.Series:
    """The index as published (``limit=0``: the whole history), one value per UTC day."""
    url = f"{fng_api_url(api_url)}/fng/"
    retry = retry or RetryPolicy()
    http = session or requests.Session()
    what = f"Fear & Greed API {url}"

    def call() -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit, "format": "json"}
        response = http.get(url, params=params, timeout=timeout)
        if response.status_code == 429:
            raise _HttpStatus(response)
        if response.status_code >= 500:
            raise _HttpStatus(response)
        if response.status_code != 200:
            raise SourceError(f"{what}: HTTP {response.status_code}: {_short(response.text)}")
        try:
            return response.json()
        except ValueError:
            raise _NotJson(response) from None

    payload = call_with_retries(call, retry=retry, what=what, classify=_classify)
    return parse_fear_greed_payload(payload, what=what)


def parse_fear_greed_payload(payload: Any, *, what: str = "Fear & Greed API") -> pd.Series:
    """alternative.me's ``{"data": [{"value", "timestamp", ...}], "metadata": {"error"}}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SourceError(f"{what}: the answer has no 'data' list")
    error = (payload.get("metadata") or {}).get("error")
    if error:
        raise SourceError(f"{what}: the API reports an error: {error}")
    entries = payload["data"]
    try:
        seconds = [int(entry["timestamp"]) for entry in entries]
        values = [float(entry["value"]) for entry in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(
            f"{what}: an entry lacks a numeric 'timestamp' or 'value' ({exc})"
        ) from exc
    days = pd.to_datetime(seconds, unit="s", utc=True).floor("D")
    index = pd.DatetimeIndex(days, name=SENTIMENT_INDEX_NAME)
    # The API lists the newest day first.
    return pd.Series(values, index=index, name=SENTIMENT_NAME, dtype="float64").sort_index()


def fetch_sentiment(
    data_dir: Path | str,
    *,
    api_url: str | None = None,
    policy: ValidationPolicy | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 10.0,
) -> SentimentResult:
    """Download the whole index and merge it into the store (idempotent: same days, same values)."""
    series = download_fear_greed(api_url=api_url, retry=retry, timeout=timeout)
    source = f"{fng_api_url(api_url)}/fng/"
    clean, report = apply_sentiment_policy(series, policy or ValidationPolicy(), source=source)
    return SentimentResult(source=source, report=report, merge=merge_sentiment(data_dir, clean))


class _HttpStatus(Exception):
    def __init__(self, response: requests.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code}")


class _NotJson(Exception):
    def __init__(self, response: requests.Response) -> None:
        self.response = response
        super().__init__(f"answer is not JSON: {_short(response.text)}")


def _classify(exc: Exception) -> Retry | Exception:
    if isinstance(exc, _HttpStatus):
        status = exc.response.status_code
        wait = retry_after_seconds(exc.response.headers) if status == 429 else None
        return Retry(f"HTTP {status}: {_short(exc.response.text)}", wait=wait)
    if isinstance(exc, _NotJson):
        return Retry(str(exc))
    if isinstance(exc, requests.Timeout):
        return Retry(f"timed out ({exc.__class__.__name__})")
    if isinstance(exc, requests.ConnectionError):
        return Retry(f"connection failed ({_short(str(exc))})")
    return exc


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
