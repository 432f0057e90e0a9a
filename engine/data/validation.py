"""Checks on candles and sentiment, and the caller's explicit policy for what fails them.

``validate_candles`` only looks and reports. ``apply_candle_policy`` reports,
then refuses, drops bad rows or fills short gaps as the policy says, and puts
what it did in the report: nothing is dropped or filled silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.data.errors import DataError
from engine.data.frames import CORE_COLUMNS, PRICE_COLUMNS
from engine.data.intervals import interval_timedelta

FIRST_OFFENDERS = 5

BadRowsPolicy = Literal["refuse", "drop"]
GapsPolicy = Literal["refuse", "report", "fill"]

# Checks whose offending rows the "drop" policy removes.
CANDLE_ROW_CHECKS = (
    "nan",
    "non_positive_price",
    "negative_volume",
    "ohlc_inconsistent",
    "duplicates",
    "off_grid",
)
SENTIMENT_ROW_CHECKS = ("nan", "out_of_range", "duplicates", "off_grid")


@dataclass(frozen=True)
class ValidationPolicy:
    """What to do with data that fails a check.

    bad_rows: "refuse" raises ValidationFailed; "drop" removes the offending rows.
    non_monotonic: rows out of time order are refused under "refuse" and sorted under "drop".
    gaps: "refuse" raises; "report" keeps them (they are in the report);
      "fill" forward-fills gaps of at most ``max_fill`` missing rows and keeps longer ones.
    """

    bad_rows: BadRowsPolicy = "refuse"
    gaps: GapsPolicy = "report"
    max_fill: int = 0

    def __post_init__(self) -> None:
        if self.bad_rows not in ("refuse", "drop"):
            raise ValueError(f"bad_rows policy must be refuse or drop, not {self.bad_rows!r}")
        if self.gaps not in ("refuse", "report", "fill"):
            raise ValueError(f"gaps policy must be refuse, report or fill, not {self.gaps!r}")
        if self.max_fill < 0:
            raise ValueError(f"max_fill must be 0 or more, not {self.max_fill}")


STRICT = ValidationPolicy(bad_rows="refuse", gaps="refuse")


@dataclass
class Issue:
    """One check's result: how many offending rows (or gaps) and the first offending times."""

    count: int = 0
    first: list[str] = field(default_factory=list)
    missing_rows: int = 0  # gaps only: rows that would close the gaps


@dataclass
class ValidationReport:
    rows: int
    step: str
    issues: dict[str, Issue]
    first_time: str | None = None
    last_time: str | None = None
    dropped_rows: int = 0
    filled_rows: int = 0
    sorted_rows: bool = False

    @property
    def ok(self) -> bool:
        return all(issue.count == 0 for issue in self.issues.values())

    def count(self, check: str) -> int:
        return self.issues[check].count

    def summary(self) -> str:
        found = [
            f"{name}={issue.count}"
            + (f" ({issue.missing_rows} missing rows)" if name == "gaps" else "")
            + (f" first at {', '.join(issue.first)}" if issue.first else "")
            for name, issue in self.issues.items()
            if issue.count
        ]
        actions = []
        if self.dropped_rows:
            actions.append(f"dropped {self.dropped_rows} rows")
        if self.filled_rows:
            actions.append(f"filled {self.filled_rows} rows")
        if self.sorted_rows:
            actions.append("sorted rows")
        text = "; ".join(found) if found else "no problems"
        return f"{self.rows} rows, {text}" + (f"; {', '.join(actions)}" if actions else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "step": self.step,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "ok": self.ok,
            "issues": {
                name: {"count": i.count, "first": i.first}
                | ({"missing_rows": i.missing_rows} if name == "gaps" else {})
                for name, i in self.issues.items()
            },
            "dropped_rows": self.dropped_rows,
            "filled_rows": self.filled_rows,
            "sorted_rows": self.sorted_rows,
        }


# --- candles -----------------------------------------------------------------------------


def validate_candles(frame: pd.DataFrame, interval: str) -> ValidationReport:
    """Report every problem in ``frame`` (in its given row order) without changing it."""
    step = interval_timedelta(interval)
    index = pd.DatetimeIndex(frame.index)
    masks = _candle_row_masks(frame, index, step)
    issues = {name: _issue(index, mask) for name, mask in masks.items()}
    issues["non_monotonic"] = _issue(index, _non_monotonic_mask(index))
    clean_index = index[~_any(masks, len(index))].unique().sort_values()
    issues["gaps"] = _gap_issue(clean_index, step)
    return _report(index, step, issues)


def apply_candle_policy(
    frame: pd.DataFrame, interval: str, policy: ValidationPolicy, *, source: str
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate, then refuse, drop or fill as ``policy`` says; returns clean sorted candles."""
    step = interval_timedelta(interval)
    report = validate_candles(frame, interval)
    _refuse_if_policy_says(report, policy, CANDLE_ROW_CHECKS, source)
    index = pd.DatetimeIndex(frame.index)
    bad = _any(_candle_row_masks(frame, index, step), len(index))
    clean = frame[~bad].sort_index()
    report.dropped_rows = int(bad.sum())
    report.sorted_rows = report.count("non_monotonic") > 0
    if policy.gaps == "fill" and policy.max_fill > 0:
        clean, report.filled_rows = _fill_candle_gaps(clean, step, policy.max_fill)
    return clean, report


def _candle_row_masks(
    frame: pd.DataFrame, index: pd.DatetimeIndex, step: pd.Timedelta
) -> dict[str, np.ndarray]:
    missing_columns = [name for name in CORE_COLUMNS if name not in frame.columns]
    if missing_columns:
        raise ValueError(f"candles lack the columns {', '.join(missing_columns)}")
    prices = frame.loc[:, list(PRICE_COLUMNS)].to_numpy(dtype="float64")
    volume = frame["volume"].to_numpy(dtype="float64")
    opens, highs, lows, closes = prices.T
    # NaN compares False, so a row with a NaN is reported under "nan" only.
    with np.errstate(invalid="ignore"):
        return {
            "nan": np.isnan(prices).any(axis=1) | np.isnan(volume) | np.asarray(index.isna()),
            "non_positive_price": (prices <= 0).any(axis=1),
            "negative_volume": volume < 0,
            "ohlc_inconsistent": (lows > highs)
            | (opens < lows)
            | (opens > highs)
            | (closes < lows)
            | (closes > highs),
            "duplicates": np.asarray(index.duplicated(keep="first")),
            "off_grid": _off_grid_mask(index, step),
        }


def _fill_candle_gaps(
    candles: pd.DataFrame, step: pd.Timedelta, max_fill: int
) -> tuple[pd.DataFrame, int]:
    """Add flat candles (previous close, zero volume) into gaps of at most ``max_fill`` rows."""
    new_index = _index_with_short_gaps_filled(pd.DatetimeIndex(candles.index), step, max_fill)
    added = len(new_index) - len(candles)
    if not added:
        return candles, 0
    filled = candles.reindex(new_index)
    is_new = filled["close"].isna().to_numpy()
    previous_close = filled["close"].ffill()
    for name in PRICE_COLUMNS:
        filled[name] = filled[name].fillna(previous_close)
    for name in filled.columns:
        if name == "close_time":
            synthetic_close = filled.index + step - pd.Timedelta(milliseconds=1)
            filled[name] = filled[name].where(~is_new, synthetic_close)
        elif name not in PRICE_COLUMNS:
            filled.loc[is_new, name] = 0.0
    return filled, added


# --- sentiment ---------------------------------------------------------------------------


def validate_sentiment(series: pd.Series) -> ValidationReport:
    """Report problems in a daily sentiment series: NaN, out of 0-100, duplicate days, gaps."""
    step = pd.Timedelta(days=1)
    index = pd.DatetimeIndex(series.index)
    masks = _sentiment_row_masks(series, index, step)
    issues = {name: _issue(index, mask) for name, mask in masks.items()}
    issues["non_monotonic"] = _issue(index, _non_monotonic_mask(index))
    clean_index = index[~_any(masks, len(index))].unique().sort_values()
    issues["gaps"] = _gap_issue(clean_index, step)
    return _report(index, step, issues)


def apply_sentiment_policy(
    series: pd.Series, policy: ValidationPolicy, *, source: str
) -> tuple[pd.Series, ValidationReport]:
    step = pd.Timedelta(days=1)
    report = validate_sentiment(series)
    _refuse_if_policy_says(report, policy, SENTIMENT_ROW_CHECKS, source)
    index = pd.DatetimeIndex(series.index)
    bad = _any(_sentiment_row_masks(series, index, step), len(index))
    clean = series[~bad].sort_index()
    report.dropped_rows = int(bad.sum())
    report.sorted_rows = report.count("non_monotonic") > 0
    if policy.gaps == "fill" and policy.max_fill > 0:
        new_index = _index_with_short_gaps_filled(
            pd.DatetimeIndex(clean.index), step, policy.max_fill
        )
        report.filled_rows = len(new_index) - len(clean)
        clean = clean.reindex(new_index).ffill()
    return clean, report


def _sentiment_row_masks(
    series: pd.Series, index: pd.DatetimeIndex, step: pd.Timedelta
) -> dict[str, np.ndarray]:
    values = series.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        return {
            "nan": np.isnan(values) | np.asarray(index.isna()),
            "out_of_range": (values < 0) | (values > 100),
            "duplicates": np.asarray(index.duplicated(keep="first")),
            "off_grid": _off_grid_mask(index, step),
        }


# --- shared ------------------------------------------------------------------------------


def _refuse_if_policy_says(
    report: ValidationReport, policy: ValidationPolicy, row_checks: tuple[str, ...], source: str
) -> None:
    bad_rows = any(report.count(name) for name in row_checks)
    out_of_order = report.count("non_monotonic") > 0
    if policy.bad_rows == "refuse" and (bad_rows or out_of_order):
        raise ValidationFailed(report, source=source)
    if policy.gaps == "refuse" and report.count("gaps"):
        raise ValidationFailed(report, source=source)


def _report(
    index: pd.DatetimeIndex, step: pd.Timedelta, issues: dict[str, Issue]
) -> ValidationReport:
    valid = index.dropna()
    return ValidationReport(
        rows=len(index),
        step=str(step),
        issues=issues,
        first_time=_iso(valid.min()) if len(valid) else None,
        last_time=_iso(valid.max()) if len(valid) else None,
    )


def _issue(index: pd.DatetimeIndex, mask: np.ndarray) -> Issue:
    positions = np.flatnonzero(mask)
    return Issue(
        count=len(positions),
        first=[_iso(index[i]) for i in positions[:FIRST_OFFENDERS]],
    )


def _gap_issue(sorted_unique: pd.DatetimeIndex, step: pd.Timedelta) -> Issue:
    """One entry per gap, reported at the first missing time; counts the missing rows too."""
    if len(sorted_unique) < 2:
        return Issue()
    deltas = np.diff(sorted_unique.asi8)
    step_ns = step.value
    gap_positions = np.flatnonzero(deltas > step_ns)
    missing = (deltas[gap_positions] // step_ns) - 1
    # A delta between one and two steps is off the grid, already reported as off_grid.
    missing = np.maximum(missing, 1)
    return Issue(
        count=len(gap_positions),
        first=[_iso(sorted_unique[i] + step) for i in gap_positions[:FIRST_OFFENDERS]],
        missing_rows=int(missing.sum()),
    )


def _index_with_short_gaps_filled(
    index: pd.DatetimeIndex, step: pd.Timedelta, max_fill: int
) -> pd.DatetimeIndex:
    if len(index) < 2:
        return index
    deltas = np.diff(index.asi8)
    additions = []
    for position in np.flatnonzero(deltas > step.value):
        missing = int(deltas[position] // step.value) - 1
        if 0 < missing <= max_fill:
            additions.append(
                pd.date_range(index[position] + step, periods=missing, freq=step, tz="UTC")
            )
    if not additions:
        return index
    return index.append(additions).sort_values().rename(index.name)


def _off_grid_mask(index: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """Rows not a whole number of steps after the first row: not on the interval's grid."""
    valid = ~np.asarray(index.isna())
    if not valid.any():
        return np.zeros(len(index), dtype=bool)
    origin = index[valid][0].value
    offsets = np.where(valid, index.asi8 - origin, 0)
    return (offsets % step.value) != 0


def _non_monotonic_mask(index: pd.DatetimeIndex) -> np.ndarray:
    values = index.asi8
    mask = np.zeros(len(values), dtype=bool)
    if len(values) > 1:
        mask[1:] = values[1:] < np.maximum.accumulate(values)[:-1]
    return mask


def _any(masks: dict[str, np.ndarray], length: int) -> np.ndarray:
    combined = np.zeros(length, dtype=bool)
    for mask in masks.values():
        combined |= mask
    return combined


def _iso(stamp: pd.Timestamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%dT%H:%M:%SZ")


class ValidationFailed(DataError):
    """The data broke a check that the caller's policy refuses; carries the full report."""

    def __init__(self, report: ValidationReport, *, source: str) -> None:
        self.report = report
        self.source = source
        super().__init__(f"{source}: refused by validation policy: {report.summary()}")
