"""Strategies: ml_basic's rule, the registry, and the future-bar check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.strategies import (
    BuyAndHold,
    LookaheadError,
    MlBasic,
    Predictor,
    StrategyError,
    UnknownStrategyError,
    check_no_lookahead,
    get_strategy,
    round_trip_cost,
)
from tests.engine.backtest.helpers import random_candles
from tests.engine.strategies.fakes import (
    FullSampleZScorePredictor,
    MomentumPredictor,
    PeekingPredictor,
)


class FixedPredictor:
    def __init__(self, values):
        self.values = values

    def predict(self, candles, sentiment=None):
        return pd.Series(self.values, index=candles.index, dtype=float)


def test_ml_basic_threshold_without_exit_keeps_the_old_every_bar_rule():
    candles = random_candles(5, seed=1)
    cost = round_trip_cost(10, 5)
    assert cost == pytest.approx(0.003)
    predictions = [np.nan, 0.0031, 0.0029, -0.01, 0.0035]
    strategy = MlBasic(FixedPredictor(predictions), fee_bps=10, slippage_bps=5, threshold=0.0004)
    targets = strategy.targets(candles)
    assert list(targets) == [0.0, 0.0, 0.0, 0.0, 1.0]
    loose = MlBasic(FixedPredictor(predictions), fee_bps=10, slippage_bps=5, threshold=0.0)
    assert list(loose.targets(candles)) == [0.0, 1.0, 0.0, 0.0, 1.0]
    # Without a threshold the default exit (0.0) holds through 0.0029: one round trip paid.
    hysteresis = MlBasic(FixedPredictor(predictions), fee_bps=10, slippage_bps=5)
    assert list(hysteresis.targets(candles)) == [0.0, 1.0, 1.0, 0.0, 1.0]


def test_ml_basic_refuses_misaligned_predictions():
    candles = random_candles(5, seed=1)

    class Misaligned:
        def predict(self, candles, sentiment=None):
            return pd.Series([0.1, 0.2])

    with pytest.raises(StrategyError, match="indexed like the candles"):
        MlBasic(Misaligned()).targets(candles)


def test_fake_predictors_satisfy_the_predictor_protocol():
    assert isinstance(MomentumPredictor(), Predictor)
    assert not isinstance(object(), Predictor)


def test_registry_builds_by_name_and_lists_known_on_unknown():
    assert isinstance(get_strategy("buy_and_hold"), BuyAndHold)
    assert isinstance(get_strategy("ml_basic", predictor=MomentumPredictor()), MlBasic)
    with pytest.raises(UnknownStrategyError, match="known strategies: buy_and_hold, ml_basic"):
        get_strategy("ml_fancy")
    with pytest.raises(StrategyError, match="needs a model"):
        get_strategy("ml_basic")
    with pytest.raises(StrategyError, match="bad parameters"):
        get_strategy("ml_basic", predictor=MomentumPredictor(), window=3)


def test_causal_strategies_pass_the_future_bar_check():
    candles = random_candles(300, seed=7)
    check_no_lookahead(
        MlBasic(MomentumPredictor(), fee_bps=0, slippage_bps=0), candles, cuts=(0.3, 0.5, 0.9)
    )
    check_no_lookahead(BuyAndHold(), candles)


@pytest.mark.parametrize("leaky", [PeekingPredictor, FullSampleZScorePredictor])
def test_strategy_fed_a_future_bar_is_caught(leaky):
    candles = random_candles(300, seed=8)
    strategy = MlBasic(leaky(), fee_bps=0, slippage_bps=0)
    with pytest.raises(LookaheadError, match="reads the future"):
        check_no_lookahead(strategy, candles, cuts=(0.3, 0.5, 0.9))


def test_future_bar_check_cuts_sentiment_to_what_was_published():
    candles = random_candles(24 * 6, seed=9)
    sentiment = pd.Series(
        np.arange(6, dtype=float), index=pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    )

    class SameDaySentiment:
        """Leaky join: uses a day's value during that day, before it was published."""

        name = "same_day"

        def targets(self, candles, sentiment=None):
            if sentiment is None or sentiment.empty:
                return pd.Series(0.0, index=candles.index)
            day_value = sentiment.reindex(candles.index.floor("D"))
            return pd.Series((day_value.to_numpy() >= 2).astype(float), index=candles.index)

    with pytest.raises(LookaheadError):
        check_no_lookahead(SameDaySentiment(), candles, sentiment, cuts=(0.4,))


def test_ml_basic_pays_the_round_trip_once_and_holds_while_above_exit():
    candles = random_candles(8, seed=1)
    # cost 0.003: enters only above 0.003 + entry (0.0005); then holds while > exit (0.0).
    predictions = [np.nan, 0.0031, 0.0036, 0.001, 0.0002, -0.0001, 0.002, 0.004]
    strategy = MlBasic(FixedPredictor(predictions), entry=0.0005, exit=0.0)
    assert list(strategy.targets(candles)) == [0, 0, 1, 1, 1, 0, 0, 1]


def test_ml_basic_min_hold_keeps_a_new_position_for_that_many_bars():
    candles = random_candles(6, seed=1)
    predictions = [0.01, -0.01, -0.01, -0.01, -0.01, -0.01]
    held = MlBasic(FixedPredictor(predictions), min_hold=3).targets(candles)
    assert list(held) == [1, 1, 1, 0, 0, 0]
    assert list(MlBasic(FixedPredictor(predictions)).targets(candles)) == [1, 0, 0, 0, 0, 0]


def test_ml_basic_probability_units_compare_the_probability_itself():
    candles = random_candles(5, seed=1)
    predictions = [0.54, 0.56, 0.52, 0.49, 0.58]
    strategy = MlBasic(FixedPredictor(predictions), units="probability", entry=0.55, exit=0.5)
    assert list(strategy.targets(candles)) == [0, 1, 1, 0, 1]


def test_ml_basic_newest_bar_only_resumes_the_state_it_remembered():
    """As in the live engine: older predictions NaN, the position carried across calls."""
    candles = random_candles(8, seed=2)
    predictions = np.array([0.004, 0.001, 0.001, -0.001, 0.001, 0.004, 0.0001, 0.0001])
    full = MlBasic(FixedPredictor(predictions), exit=0.0).targets(candles)
    live = MlBasic(FixedPredictor(predictions), exit=0.0)
    decided = []
    for end in range(1, len(candles) + 1):
        newest_only = np.full(end, np.nan)
        newest_only[-1] = predictions[end - 1]
        live.predictor = FixedPredictor(newest_only)
        decided.append(float(live.targets(candles.iloc[:end]).iloc[-1]))
    assert decided == list(full) == [1, 1, 1, 0, 0, 1, 1, 1]


def test_ml_basic_reads_its_parameters_from_the_version_metadata():
    metadata = {
        "strategy": {
            "name": "ml_basic",
            "units": "probability",
            "params": {"entry": 0.6, "exit": 0.45, "min_hold": 2},
        }
    }
    strategy = get_strategy("ml_basic", predictor=MomentumPredictor(metadata=metadata))
    assert strategy.params.units == "probability"
    assert (strategy.params.entry, strategy.params.exit, strategy.params.min_hold) == (
        0.6,
        0.45,
        2,
    )
    overridden = get_strategy("ml_basic", predictor=MomentumPredictor(metadata=metadata), entry=0.7)
    assert overridden.params.entry == 0.7 and overridden.params.exit == 0.45
    old = get_strategy("ml_basic", predictor=MomentumPredictor(metadata={"horizon": 1}))
    assert old.params == type(old.params)()  # metadata before the key: the defaults


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"entry": float("nan")}, "entry must be a finite number"),
        ({"exit": float("inf")}, "exit must be a finite number"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"min_hold": -1}, "min_hold must be >= 0"),
        ({"units": "odds"}, "units must be one of"),
        ({"units": "probability", "entry": 0.4, "exit": 0.6}, "exit <= entry"),
    ],
)
def test_ml_basic_refuses_bad_parameters_naming_them(params, message):
    with pytest.raises(StrategyError, match=message):
        get_strategy("ml_basic", predictor=MomentumPredictor(), **params)


def test_hysteresis_passes_the_future_bar_check():
    candles = random_candles(300, seed=7)
    strategy = MlBasic(MomentumPredictor(), fee_bps=0, slippage_bps=0, exit=-0.001, min_hold=3)
    check_no_lookahead(strategy, candles, cuts=(0.3, 0.5, 0.9))
