"""A fake Fear & Greed API (alternative.me's ``GET /fng/?limit=N``) on loopback.

Answers as the real API does: newest day first, values and timestamps as
strings, ``time_until_update`` on the newest entry only, and
``metadata.error`` null. ``limit=0`` returns the whole history. Faults come
from http_fake (429 via ``rate_limited``, ``html_error``, ``slow``), and
``api_error()`` makes the API report an error in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.http_fake import FakeHttpServer, FakeRequest, FakeResponse, Fault

CLASSIFICATIONS = (
    (25, "Extreme Fear"),
    (46, "Fear"),
    (55, "Neutral"),
    (75, "Greed"),
    (101, "Extreme Greed"),
)


@dataclass(frozen=True)
class IndexEntry:
    timestamp: int  # Unix seconds, as published
    value: int


def classify(value: int) -> str:
    return next(label for upper, label in CLASSIFICATIONS if value < upper)


def rate_limited(retry_after: int = 1, *, times: int | None = 1) -> Fault:
    response = FakeResponse(
        status=429,
        body="Too Many Requests",
        headers={"Retry-After": str(retry_after)},
        content_type="text/plain",
    )
    return Fault(response, path="/fng/", times=times)


def api_error(message: str = "Limit must be an integer", *, times: int | None = 1) -> Fault:
    body = {"name": "Fear and Greed Index", "data": [], "metadata": {"error": message}}
    return Fault(FakeResponse.json(body), path="/fng/", times=times)


class FakeFearGreedServer(FakeHttpServer):
    def __init__(self, entries: list[IndexEntry] | None = None) -> None:
        super().__init__()
        self.entries = sorted(entries or [], key=lambda e: e.timestamp)
        self.add_route("GET", "/fng/", self._fng)

    def _fng(self, request: FakeRequest) -> FakeResponse:
        try:
            limit = int(request.query.get("limit", "1"))
        except ValueError:
            return FakeResponse.json(
                {
                    "name": "Fear and Greed Index",
                    "data": [],
                    "metadata": {"error": "Limit must be an integer"},
                }
            )
        newest_first = list(reversed(self.entries))
        chosen = newest_first if limit <= 0 else newest_first[:limit]
        data = [
            {
                "value": str(entry.value),
                "value_classification": classify(entry.value),
                "timestamp": str(entry.timestamp),
            }
            for entry in chosen
        ]
        if data:
            data[0]["time_until_update"] = "12345"
        return FakeResponse.json(
            {"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}
        )
