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


def test_ml_basic_goes_long_only_when_prediction_beats_round_trip_cost():
    candles = random_candles(5, seed=1)
    cost = round_trip_cost(10, 5)
    assert cost == pytest.approx(0.003)
    predictions = [np.nan, 0.0031, 0.0029, -0.01, 0.0035]
    strategy = MlBasic(FixedPredictor(predictions), fee_bps=10, slippage_bps=5, threshold=0.0004)
    targets = strategy.targets(candles)
    assert list(targets) == [0.0, 0.0, 0.0, 0.0, 1.0]
    loose = MlBasic(FixedPredictor(predictions), fee_bps=10, slippage_bps=5)
    assert list(loose.targets(candles)) == [0.0, 1.0, 0.0, 0.0, 1.0]


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
