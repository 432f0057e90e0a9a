"""Lineage verified at registration: a model's account of its training is checked, not trusted.

A registered model says which bars it was fit on (``splits.train``), chosen on
(``splits.validation``) and tested on (``splits.test``), and which data it read
(``data.start``, ``data.end``, ``data.content_hash``). Issue 25 showed that ``"splits": {}``,
or every date moved back by the same amount, let a model be "validated" on bars it had been
trained on. So at registration (``register_model``, the admin's upload form):

- the splits must be present and consistent with each other and with the data: each split's
  inputs before its decisions before its targets, fit before selection before test, and all
  of it inside ``data.start``..``data.end``; an inconsistent account is refused;
- where the store holds the bars of ``data.start``..``data.end``, the recorded content hash
  must be the store's hash of them; a mismatch is refused (a shifted account reads other
  bars, whose hash is not the one recorded);
- an account that cannot be verified (splits or hash missing, bars not in the store) is
  accepted only with its first unseen bar moved to the registration time: it is judged only
  on bars that came after it existed, and its page says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings

from engine.data import (
    DataError,
    StoreEmptyError,
    ValidationPolicy,
    apply_candle_policy,
    interval_timedelta,
    read_candles,
    stored_candle_range,
)

SPLIT_ORDER = ("train", "validation", "test")
REQUIRED_SPLITS = ("train", "validation")
# In time order within a split; the decision bars are optional (older metadata lacks them).
SPLIT_KEYS = ("first_input_bar", "first_decision_bar", "last_decision_bar", "last_target_bar")
REQUIRED_KEYS = ("first_input_bar", "last_target_bar")


class LineageRefused(ValueError):
    """The model's account of its training contradicts itself or the data; says where."""


@dataclass(frozen=True)
class LineageCheck:
    """The outcome: verified, or why not (then it is judged only after registration)."""

    verified: bool
    reasons: list[str] = field(default_factory=list)
    store_hash_checked: bool = False

    def to_dict(self, judged_from: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verified": self.verified,
            "reasons": list(self.reasons),
            "store_hash_checked": self.store_hash_checked,
        }
        if judged_from is not None:
            out["judged_from"] = pd.Timestamp(judged_from).isoformat()
        return out


def _stamp(value: Any, where: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise LineageRefused(f"{where}: {value!r} is not a date/time") from exc
    if pd.isna(stamp):
        raise LineageRefused(f"{where}: {value!r} is not a date/time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _split_bars(splits: Mapping[str, Any]) -> tuple[dict[str, dict[str, pd.Timestamp]], list[str]]:
    """Each present split's bars; reasons for what is missing (unverifiable, not refused)."""
    bars: dict[str, dict[str, pd.Timestamp]] = {}
    missing: list[str] = []
    for name in SPLIT_ORDER:
        entry = splits.get(name)
        if entry is None:
            if name in REQUIRED_SPLITS:
                missing.append(f"splits.{name} is missing")
            continue
        if not isinstance(entry, Mapping):
            raise LineageRefused(f"splits.{name} must be an object, got {type(entry).__name__}")
        absent = [key for key in REQUIRED_KEYS if not entry.get(key)]
        if absent:
            missing.append(f"splits.{name}.{absent[0]} is missing")
            continue
        bars[name] = {
            key: _stamp(entry[key], f"splits.{name}.{key}") for key in SPLIT_KEYS if entry.get(key)
        }
    return bars, missing


def _check_split_orders(bars: Mapping[str, Mapping[str, pd.Timestamp]]) -> None:
    for name, split in bars.items():
        keys = [key for key in SPLIT_KEYS if key in split]
        for earlier, later in itertools.pairwise(keys):
            if split[earlier] > split[later]:
                raise LineageRefused(
                    f"splits.{name}.{earlier} {split[earlier].isoformat()} is after "
                    f"splits.{name}.{later} {split[later].isoformat()}"
                )
    present = [name for name in SPLIT_ORDER if name in bars]
    _check_same_shape(bars, present)
    for first, second in itertools.pairwise(present):
        a, b = bars[first], bars[second]
        # Inputs may overlap (a look-back reads earlier bars); decisions and ends may not.
        pairs = [("first_input_bar", "first_input_bar"), ("last_target_bar", "last_target_bar")]
        if "last_decision_bar" in a and "first_decision_bar" in b:
            pairs.append(("last_decision_bar", "first_decision_bar"))
        for key_a, key_b in pairs:
            if a[key_a] >= b[key_b] and not (
                key_a == key_b == "first_input_bar" and a[key_a] == b[key_b]
            ):
                raise LineageRefused(
                    f"splits.{first}.{key_a} {a[key_a].isoformat()} is not before "
                    f"splits.{second}.{key_b} {b[key_b].isoformat()}: {first} must come before "
                    f"{second}"
                )


def _check_same_shape(bars: Mapping[str, Mapping[str, pd.Timestamp]], present: list[str]) -> None:
    """One feature set and one horizon made every split: the same look-back and look-ahead."""
    spans = {
        "look-back (first_decision_bar - first_input_bar)": (
            "first_input_bar",
            "first_decision_bar",
        ),
        "horizon (last_target_bar - last_decision_bar)": ("last_decision_bar", "last_target_bar"),
    }
    for what, (start, stop) in spans.items():
        measured = {
            name: bars[name][stop] - bars[name][start]
            for name in present
            if start in bars[name] and stop in bars[name]
        }
        first = next(iter(measured.items()), None)
        for name, span in measured.items():
            if first is not None and span != first[1]:
                raise LineageRefused(
                    f"splits.{name} {what} is {span}, splits.{first[0]}'s is {first[1]}: one "
                    "model's splits share one feature window and one horizon"
                )


def _check_inside_data(
    bars: Mapping[str, Mapping[str, pd.Timestamp]], start: pd.Timestamp, end: pd.Timestamp
) -> None:
    if start > end:
        raise LineageRefused(f"data.start {start.isoformat()} is after data.end {end.isoformat()}")
    for name, split in bars.items():
        if split["first_input_bar"] < start:
            raise LineageRefused(
                f"splits.{name}.first_input_bar {split['first_input_bar'].isoformat()} is "
                f"before data.start {start.isoformat()}"
            )
        if split["last_target_bar"] > end:
            raise LineageRefused(
                f"splits.{name}.last_target_bar {split['last_target_bar'].isoformat()} is "
                f"after data.end {end.isoformat()}"
            )


def _check_not_after(bars: Mapping[str, Mapping[str, pd.Timestamp]], now: pd.Timestamp) -> None:
    for name, split in bars.items():
        if split["last_target_bar"] > now:
            raise LineageRefused(
                f"splits.{name}.last_target_bar {split['last_target_bar'].isoformat()} is after "
                f"the registration time {now.isoformat()}: a model cannot have read future bars"
            )


def store_hashes(
    data_dir: Path, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
) -> set[str] | None:
    """The store's hashes of [start, end], raw and gap-filled; None: the store lacks them."""
    stored = stored_candle_range(data_dir, symbol, interval)
    if stored is None or stored[0] > start or stored[1] < end:
        return None
    step = interval_timedelta(interval)
    try:
        read = read_candles(data_dir, symbol, interval, start=start, end=end + step)
    except (StoreEmptyError, DataError, ValueError):
        return None
    hashes = {read.content_hash}
    try:
        filled, _report = apply_candle_policy(
            read.frame,
            interval,
            ValidationPolicy(bad_rows="refuse", gaps="fill", max_fill=len(read.frame) or 1),
            source="lineage check",
        )
        from engine.data import content_hash

        hashes.add(content_hash(filled))
    except (DataError, ValueError):
        pass
    return hashes


def lineage_verify(
    metadata: Mapping[str, Any],
    *,
    symbol: str,
    interval: str,
    now: datetime,
    data_dir: Path | None = None,
) -> LineageCheck:
    """Check a registered model's account; raises LineageRefused where it contradicts itself."""
    raw_splits = metadata.get("splits")
    if raw_splits is not None and not isinstance(raw_splits, Mapping):
        raise LineageRefused(f"splits must be an object, got {type(raw_splits).__name__}")
    bars, reasons = _split_bars(raw_splits or {})
    _check_split_orders(bars)
    now_stamp = _stamp(now, "registration time")
    _check_not_after(bars, now_stamp)
    data = metadata.get("data")
    data = data if isinstance(data, Mapping) else {}
    if not data.get("start") or not data.get("end"):
        reasons.append("data.start and data.end are missing")
        return LineageCheck(False, reasons)
    start, end = _stamp(data["start"], "data.start"), _stamp(data["end"], "data.end")
    _check_inside_data(bars, start, end)
    if end > now_stamp:
        raise LineageRefused(
            f"data.end {end.isoformat()} is after the registration time {now_stamp.isoformat()}"
        )
    recorded = str(data.get("content_hash") or "")
    if not recorded:
        reasons.append("data.content_hash is missing")
        return LineageCheck(False, reasons)
    hashes = store_hashes(
        Path(data_dir or settings.TRADEBOT_DATA_DIR), symbol, interval, start, end
    )
    if hashes is None:
        reasons.append(
            f"the store does not hold the {symbol} {interval} bars {start.isoformat()} to "
            f"{end.isoformat()}, so data.content_hash cannot be checked"
        )
        return LineageCheck(False, reasons)
    if recorded not in hashes:
        raise LineageRefused(
            f"data.content_hash {recorded[:12]}... is not the store's hash of the {symbol} "
            f"{interval} bars {start.isoformat()} to {end.isoformat()} "
            f"({sorted(hashes)[0][:12]}...): the metadata does not describe the data it names"
        )
    return LineageCheck(not reasons, reasons, store_hash_checked=True)


def judged_from(now: datetime, interval: str) -> pd.Timestamp:
    """The first bar an unverified model may be judged on: the next bar after registration."""
    step = interval_timedelta(interval)
    stamp = pd.Timestamp(now)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.ceil(step) if stamp != stamp.ceil(step) else stamp + step


def lineage_apply(
    metadata: Mapping[str, Any], check: LineageCheck, *, now: datetime, interval: str
) -> dict[str, Any]:
    """The metadata the registry stores: an unverified account starts after registration."""
    out = dict(metadata)
    if check.verified:
        out["lineage_check"] = check.to_dict()
        return out
    first = judged_from(now, interval)
    out["lineage_check"] = {
        **check.to_dict(first),
        "claimed_out_of_sample_from": metadata.get("out_of_sample_from"),
    }
    out["out_of_sample_from"] = first.isoformat()
    return out
