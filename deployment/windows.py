"""Deployment windows: the hours in which a target accepts deploys (pure functions).

A spec is a `;`-separated list of entries `[DAYS ]HH:MM-HH:MM`, times in UTC:

    "mon-fri 02:00-05:00; sat,sun 00:00-24:00"
    "22:00-02:00"            (every day; a window may cross midnight)

DAYS is `daily` (the default), one day, a range (`mon-fri`) or a comma list.
A window that crosses midnight belongs to the day it starts on. An empty or
None spec means "always allowed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENTRY_PATTERN = re.compile(
    r"^(?:(?P<days>[a-z,\-]+)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)


class WindowSpecError(ValueError):
    """A deployment window spec that cannot be read."""


@dataclass(frozen=True)
class Window:
    weekdays: frozenset[int]
    start_minute: int
    end_minute: int  # may be <= start_minute: the window ends the next day

    @property
    def length_minutes(self) -> int:
        length = self.end_minute - self.start_minute
        return length if length > 0 else length + 24 * 60


def parse_windows(spec: str | None) -> list[Window]:
    if spec is None or not spec.strip():
        return []
    return [
        parse_entry(entry.strip().lower(), position)
        for position, entry in enumerate(spec.split(";"), start=1)
        if entry.strip()
    ]


def parse_entry(entry: str, position: int) -> Window:
    match = ENTRY_PATTERN.match(entry)
    if match is None:
        raise WindowSpecError(f"window entry {position} ({entry!r}): expected '[DAYS ]HH:MM-HH:MM'")
    try:
        weekdays = parse_days(match["days"] or "daily")
        start = parse_minute(match["start"], allow_24=False)
        end = parse_minute(match["end"], allow_24=True)
    except WindowSpecError as error:
        raise WindowSpecError(f"window entry {position} ({entry!r}): {error}") from None
    if start == end:
        raise WindowSpecError(f"window entry {position} ({entry!r}): empty window")
    return Window(weekdays=weekdays, start_minute=start, end_minute=end % (24 * 60))


def parse_days(text: str) -> frozenset[int]:
    if text in ("daily", "all", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        start = day_index(first)
        stop = day_index(last) if last else start
        day = start
        while True:  # a range may wrap around the week: sat-mon
            days.add(day)
            if day == stop:
                break
            day = (day + 1) % 7
    return frozenset(days)


def day_index(name: str) -> int:
    key = name.strip()[:3]
    if key not in DAY_NAMES:
        raise WindowSpecError(f"unknown day {name!r}")
    return DAY_NAMES.index(key)


def parse_minute(text: str, *, allow_24: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise WindowSpecError(f"invalid time {text!r}")
    return hours * 60 + minutes


def as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("window checks need an aware datetime (UTC), got a naive one")
    return now.astimezone(UTC)


def window_allows(now: datetime, spec: str | None) -> bool:
    """Whether a deploy may start at `now` under the spec (always, if there is none)."""
    windows = parse_windows(spec)
    if not windows:
        return True
    moment = as_utc(now)
    return any(contains(window, moment) for window in windows)


def contains(window: Window, moment: datetime) -> bool:
    # Look at the window opening today and the one that opened yesterday (overnight windows).
    for days_back in (0, 1):
        opening = window_opening(window, moment.date() - timedelta(days=days_back))
        if opening is not None and opening <= moment < opening + timedelta(
            minutes=window.length_minutes
        ):
            return True
    return False


def window_opening(window: Window, day: date) -> datetime | None:
    if day.weekday() not in window.weekdays:
        return None
    start = time(window.start_minute // 60, window.start_minute % 60, tzinfo=UTC)
    return datetime.combine(day, start)


def next_window_start(now: datetime, spec: str | None) -> datetime:
    """When a deploy may start: `now` if inside a window, else the next window's opening."""
    moment = as_utc(now)
    windows = parse_windows(spec)
    if not windows or any(contains(window, moment) for window in windows):
        return moment
    openings = [
        opening
        for days_ahead in range(8)
        for window in windows
        if (opening := window_opening(window, moment.date() + timedelta(days=days_ahead)))
        is not None
        and opening > moment
    ]
    return min(openings)
