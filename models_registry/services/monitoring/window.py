"""Slot arithmetic and the bars a scheduled run judges.

A slot (the UTC date for the daily run, ``wf-<ISO week>`` for the weekly walk-forward
report) makes at most one run per version. A daily window starts after the version's
training data and after its previous scheduled window and ends at the last stored bar, so
every scheduled run is out-of-sample by construction and no bar is judged twice; the
walk-forward window is the whole out-of-sample history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.utils import timezone

from engine.data import interval_timedelta, stored_candle_range
from models_registry.gates import gates_for
from models_registry.models import ModelVersion, ValidationRun
from models_registry.services import lifecycle

WALK_FORWARD_SLOT_PREFIX = "wf-"


@dataclass(frozen=True)
class ScheduledWindow:
    """[start, stop) of the bars a scheduled run judges, and roughly how many there are."""

    start: pd.Timestamp
    stop: pd.Timestamp
    bars: int


class WindowUnavailable(Exception):
    """There is nothing (or not enough) new to judge; the message says why."""


def daily_slot(now: datetime | None = None) -> str:
    return (now or timezone.now()).astimezone(UTC).date().isoformat()


def weekly_slot(now: datetime | None = None) -> str:
    year, week, _ = (now or timezone.now()).astimezone(UTC).isocalendar()
    return f"{WALK_FORWARD_SLOT_PREFIX}{year}-W{week:02d}"


def min_new_bars(version: ModelVersion) -> int:
    """Bars a scheduled run needs: ``drift.min_new_bars``, else what a validation needs.

    Judged on fewer bars than the original validation, the same gates would be noisier;
    so by default a daily run waits (and says so) until as many new bars have arrived.
    """
    drift = gates_for(version.name, "drift")
    if "min_new_bars" in drift:
        return int(drift["min_new_bars"])
    return int(gates_for(version.name, "validation").get("min_bars", 1))


def baseline_run(version: ModelVersion) -> ValidationRun | None:
    """The passing out-of-sample validation the version went to production on."""
    return lifecycle.passing_validation_run(version)


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def first_unjudged_bar(version: ModelVersion) -> pd.Timestamp:
    """After the training data and after every window this version was already judged on."""
    step = interval_timedelta(version.interval)
    oos = version.out_of_sample_from or (version.metadata or {}).get("out_of_sample_from")
    if not oos:
        raise WindowUnavailable(
            f"{version} has no out_of_sample_from: a scheduled run could not prove its window "
            "is out-of-sample"
        )
    start = _utc(oos).ceil(step)
    previous_end = version.last_scheduled_window_end
    if previous_end is None:
        baseline = baseline_run(version)
        previous_end = baseline.window_end if baseline is not None else None
    if previous_end is not None:
        # window_end is the open time of the window's last bar: the next bar is new.
        start = max(start, _utc(previous_end) + step)
    return start


def scheduled_window(version: ModelVersion, data_dir: Path | None = None) -> ScheduledWindow:
    """The bars since the last judgement, up to the last stored bar; raises WindowUnavailable."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    step = interval_timedelta(version.interval)
    start = first_unjudged_bar(version)
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    if stored is None:
        raise WindowUnavailable(
            f"no {version.symbol} {version.interval} candles stored in {data_dir}"
        )
    stop = stored[1] + step
    bars = max(0, int((stop - start) / step))
    needed = min_new_bars(version)
    if bars < needed:
        raise WindowUnavailable(
            f"{bars} new {version.interval} bars since {start.isoformat()} (last stored bar "
            f"{stored[1].isoformat()}); a scheduled run needs at least {needed} "
            "(gate drift.min_new_bars)"
        )
    return ScheduledWindow(start, stop, bars)


def walk_forward_window(
    version: ModelVersion, parts: int, data_dir: Path | None = None
) -> ScheduledWindow:
    """The version's whole out-of-sample history: from its first unseen bar to the last stored."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    step = interval_timedelta(version.interval)
    oos = version.out_of_sample_from or (version.metadata or {}).get("out_of_sample_from")
    if not oos:
        raise WindowUnavailable(f"{version} has no out_of_sample_from")
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    if stored is None:
        raise WindowUnavailable(f"no {version.symbol} {version.interval} candles in {data_dir}")
    start, stop = _utc(oos).ceil(step), stored[1] + step
    bars = max(0, int((stop - start) / step))
    if bars < 2 * parts:
        raise WindowUnavailable(
            f"{bars} out-of-sample bars: too few for a {parts}-part walk-forward report"
        )
    return ScheduledWindow(start, stop, bars)
