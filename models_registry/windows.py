"""The windows a version states about itself: fit, selection and first unseen bar (#12).

All come from the artifact's own metadata (``splits``, written by
``engine.training.dataset.split_boundaries``): a caller cannot declare them.

- fit: the ``train`` split, from the first bar its inputs read to the last bar its targets read;
- selection: the ``validation`` split (early stopping, Platt calibration and the
  hyper-parameter search's selection metric all read it);
- first unseen: one bar after everything training and selection touched, test split included
  (``engine.backtest.guards.policy_window_start``), the start of the policy window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from engine.backtest.errors import BacktestError
from engine.backtest.guards import policy_window_start
from engine.data import interval_timedelta

WINDOW_FIELDS = ("fit_start", "fit_end", "selection_start", "selection_end", "first_unseen_at")


class WindowError(ValueError):
    """The metadata's windows cannot be read, or disagree with what a caller declared."""


def version_windows(metadata: Mapping[str, Any], interval: str) -> dict[str, datetime | None]:
    """The five window columns of a version; None where the metadata has no splits."""
    raw_splits = metadata.get("splits")
    splits: Mapping[str, Any] = raw_splits if isinstance(raw_splits, Mapping) else {}
    try:
        step = interval_timedelta(interval)
        first_unseen = policy_window_start(metadata, step)
    except (BacktestError, ValueError) as exc:
        raise WindowError(str(exc)) from exc
    return {
        "fit_start": _bar(splits, "train", "first_input_bar"),
        "fit_end": _bar(splits, "train", "last_target_bar"),
        "selection_start": _bar(splits, "validation", "first_input_bar"),
        "selection_end": _bar(splits, "validation", "last_target_bar"),
        "first_unseen_at": first_unseen.to_pydatetime() if first_unseen is not None else None,
    }


def declared_contradiction(
    declared: datetime, windows: Mapping[str, datetime | None]
) -> str | None:
    """A declared first out-of-sample bar must be the metadata's first unseen bar, exactly.

    Earlier would judge the model on bars it was fit or chosen on; later would make the
    version's out_of_sample_from and first_unseen_at disagree (a DB constraint forbids that).
    """
    first_unseen = windows.get("first_unseen_at")
    if first_unseen is None:
        return (
            f"out_of_sample_from {_iso(declared)} was given, but the metadata has no splits "
            "to prove which bars the model never saw"
        )
    if pd.Timestamp(declared) != pd.Timestamp(first_unseen):
        return (
            f"out_of_sample_from {_iso(declared)} contradicts the metadata's first unseen bar "
            f"first_unseen_at {_iso(first_unseen)} (one bar after the last bar training, "
            "selection and the test split touched)"
        )
    return None


def _bar(splits: Mapping[str, Any], split: str, key: str) -> datetime | None:
    entry = splits.get(split)
    if not isinstance(entry, Mapping) or not entry.get(key):
        return None
    try:
        stamp = pd.Timestamp(entry[key])
    except (TypeError, ValueError) as exc:
        raise WindowError(f"splits.{split}.{key}: {entry[key]!r} is not a date/time") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _iso(value: datetime) -> str:
    return pd.Timestamp(value).isoformat()
