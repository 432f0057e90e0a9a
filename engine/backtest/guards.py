"""Out-of-sample guard: a model is only judged on bars it never saw in training or selection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from engine.backtest.errors import BacktestError, InSampleWindowError

OUT_OF_SAMPLE = "out_of_sample"
IN_SAMPLE = "in_sample"  # allowed explicitly; such a run never passes a gate
UNVERIFIED = "unverified"  # a model without metadata: we cannot prove it never saw the window
NOT_APPLICABLE = "not_applicable"  # no model involved (buy_and_hold)


def _utc(value: Any, field: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise BacktestError(f"model metadata: {field} is not a date/time: {value!r}") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def out_of_sample_start(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    """First bar the model never used: `out_of_sample_from`, else just after `data.end`."""
    if metadata.get("out_of_sample_from"):
        return _utc(metadata["out_of_sample_from"], "out_of_sample_from")
    data_end = (metadata.get("data") or {}).get("end")
    if data_end:
        # data.end is the open time of the last training bar: any later bar is unseen.
        return _utc(data_end, "data.end") + pd.Timedelta(microseconds=1)
    return None


def check_out_of_sample(
    metadata: Mapping[str, Any] | None,
    window_start: pd.Timestamp,
    *,
    allow_in_sample: bool = False,
) -> str:
    """Classify the window against the model's training data; refuse an overlap unless allowed.

    Returns one of OUT_OF_SAMPLE, IN_SAMPLE (only with allow_in_sample) or UNVERIFIED.
    """
    if metadata is None:
        return UNVERIFIED
    first_unseen = out_of_sample_start(metadata)
    if first_unseen is None:
        return UNVERIFIED
    start = _utc(window_start, "window start")
    if start >= first_unseen:
        return OUT_OF_SAMPLE
    if not allow_in_sample:
        raise InSampleWindowError(
            f"backtest window starts {start.isoformat()}, before the model's out-of-sample data "
            f"({first_unseen.isoformat()}): the model saw these bars in training. Start the window "
            f"later, or pass allow_in_sample=True (--allow-in-sample) for a run marked in-sample "
            f"that can never pass a gate"
        )
    return IN_SAMPLE


def last_touched_bar(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    """The latest bar training or model selection read: max of every split's last target bar.

    The test split counts too: a model whose test score was looked at was chosen on it.
    """
    splits = metadata.get("splits") or {}
    stamps = [
        _utc(split["last_target_bar"], f"splits.{name}.last_target_bar")
        for name, split in splits.items()
        if isinstance(split, Mapping) and split.get("last_target_bar")
    ]
    return max(stamps) if stamps else None


def policy_window_start(metadata: Mapping[str, Any], step: pd.Timedelta) -> pd.Timestamp | None:
    """First bar of the policy window: one bar after everything the model's making touched.

    The later of `out_of_sample_start` and the last split target bar plus one bar, on the bar grid.
    """
    candidates = []
    declared = out_of_sample_start(metadata)
    if declared is not None:
        candidates.append(declared.ceil(step))
    touched = last_touched_bar(metadata)
    if touched is not None:
        candidates.append(touched + step)
    return max(candidates) if candidates else None


# Splits the model was fit on or chosen with (early stopping): a declared first unseen bar
# must come after all their bars. The test split is not used for fitting; the policy window
# (`policy_window_start`) starts after it anyway.
FIT_AND_SELECTION_SPLITS = ("train", "validation")


def window_contradictions(metadata: Mapping[str, Any]) -> list[str]:
    """Each way the metadata's declared windows disagree with its own splits, naming both dates.

    Empty when consistent (or when the metadata declares no splits to check against).
    """
    problems: list[str] = []
    splits = metadata.get("splits") or {}
    declared = out_of_sample_start(metadata)
    data_end = (metadata.get("data") or {}).get("end")
    last_data_bar = _utc(data_end, "data.end") if data_end else None
    for name, split in splits.items():
        if not isinstance(split, Mapping) or not split.get("last_target_bar"):
            continue
        last = _utc(split["last_target_bar"], f"splits.{name}.last_target_bar")
        if split.get("first_input_bar"):
            first = _utc(split["first_input_bar"], f"splits.{name}.first_input_bar")
            if first > last:
                problems.append(
                    f"splits.{name}.first_input_bar {first.isoformat()} is after "
                    f"splits.{name}.last_target_bar {last.isoformat()}"
                )
        if name in FIT_AND_SELECTION_SPLITS and declared is not None and declared <= last:
            problems.append(
                f"out_of_sample_from {declared.isoformat()} is not after "
                f"splits.{name}.last_target_bar {last.isoformat()}: the model was "
                f"{'fit' if name == 'train' else 'chosen'} on those bars"
            )
        if last_data_bar is not None and last > last_data_bar:
            problems.append(
                f"splits.{name}.last_target_bar {last.isoformat()} is after data.end "
                f"{last_data_bar.isoformat()}"
            )
    return problems
