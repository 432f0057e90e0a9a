"""Deployment windows: pure functions of a time and a spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deployment.windows import WindowSpecError, next_window_start, window_allows

# 2026-11-23 is a Monday.
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def at(day_offset: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY + timedelta(days=day_offset, hours=hour, minutes=minute)


def test_no_spec_always_allows():
    assert window_allows(at(0, 12), None)
    assert window_allows(at(0, 12), "  ")
    assert next_window_start(at(0, 12), None) == at(0, 12)


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        (at(0, 1, 59), False),
        (at(0, 2), True),  # the opening minute is inside
        (at(0, 4, 59), True),
        (at(0, 5), False),  # the closing minute is outside
        (at(5, 3), False),  # Saturday: weekdays only
    ],
)
def test_weekday_window(moment, allowed):
    assert window_allows(moment, "mon-fri 02:00-05:00") is allowed


def test_window_across_midnight_belongs_to_its_start_day():
    spec = "fri 22:00-02:00"
    assert window_allows(at(4, 23), spec)  # Friday 23:00
    assert window_allows(at(5, 1, 30), spec)  # Saturday 01:30, still Friday's window
    assert not window_allows(at(5, 22, 30), spec)  # Saturday night is not a window
    assert not window_allows(at(0, 1), spec)  # Monday 01:00 (Sunday night) neither


def test_several_entries_and_day_lists():
    spec = "mon-fri 02:00-05:00; sat,sun 00:00-24:00"
    assert window_allows(at(6, 15), spec)  # Sunday afternoon
    assert not window_allows(at(2, 15), spec)  # Wednesday afternoon


def test_aware_times_in_other_zones_are_compared_in_utc():
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 23, 3, 30, tzinfo=paris)  # 02:30 UTC
    assert window_allows(moment, "mon 02:00-03:00")


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="naive"):
        window_allows(datetime(2026, 11, 23, 3), "02:00-03:00")


def test_next_window_start_later_today_tomorrow_and_over_the_weekend():
    spec = "mon-fri 02:00-05:00"
    assert next_window_start(at(0, 1), spec) == at(0, 2)
    assert next_window_start(at(0, 6), spec) == at(1, 2)
    assert next_window_start(at(4, 6), spec) == at(7, 2)  # Friday after hours -> Monday
    assert next_window_start(at(0, 3), spec) == at(0, 3)  # inside: now


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mon-fri 2-5", "entry 1 .*expected"),
        ("02:00-05:00; funday 01:00-02:00", "entry 2 .*unknown day 'funday'"),
        ("25:00-26:00", "invalid time '25:00'"),
        ("03:00-03:00", "empty window"),
        ("24:00-01:00", "invalid time '24:00'"),
    ],
)
def test_bad_specs_name_the_entry_and_the_problem(spec, message):
    with pytest.raises(WindowSpecError, match=message):
        window_allows(at(0, 0), spec)
