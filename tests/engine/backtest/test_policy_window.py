"""The policy window starts one bar after every bar training and model selection touched."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.backtest.errors import BacktestError
from engine.backtest.guards import last_touched_bar, policy_window_start

HOUR = pd.Timedelta(hours=1)


def metadata(**overrides: object) -> dict:
    base = {
        "out_of_sample_from": "2024-03-01T05:00:00+00:00",
        "splits": {
            "train": {"first_input_bar": "2024-01-01T00:00:00+00:00",
                      "last_target_bar": "2024-02-01T00:00:00+00:00"},
            "validation": {"last_target_bar": "2024-02-20T00:00:00+00:00"},
            "test": {"last_target_bar": "2024-03-10T07:00:00+00:00"},
        },
    }  # fmt: skip
    return {**base, **overrides}


def test_the_test_split_counts_as_touched() -> None:
    # out_of_sample_from says March 1st, but the test split (whose score chose the model)
    # read bars to March 10th 07:00: the policy window starts at 08:00.
    assert policy_window_start(metadata(), HOUR) == pd.Timestamp("2024-03-10T08:00", tz="UTC")


def test_a_declared_start_later_than_the_splits_wins_on_the_bar_grid() -> None:
    meta = metadata(out_of_sample_from="2024-04-01T05:30:00+00:00")
    assert policy_window_start(meta, HOUR) == pd.Timestamp("2024-04-01T06:00", tz="UTC")


def test_without_splits_the_declared_start_is_used_and_without_both_none() -> None:
    assert last_touched_bar({"out_of_sample_from": "2024-03-01"}) is None
    assert policy_window_start({"out_of_sample_from": "2024-03-01"}, HOUR) == pd.Timestamp(
        "2024-03-01", tz="UTC"
    )
    assert policy_window_start({}, HOUR) is None


def test_a_malformed_split_bar_is_refused_by_name() -> None:
    meta = metadata(splits={"test": {"last_target_bar": "soon"}})
    with pytest.raises(BacktestError, match=r"splits\.test\.last_target_bar"):
        policy_window_start(meta, HOUR)
