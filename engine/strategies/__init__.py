"""Strategies: candles (and a model) in, a target position per bar out."""

from engine.strategies.base import (
    LookaheadError,
    Predictor,
    Strategy,
    StrategyError,
    UnknownStrategyError,
)
from engine.strategies.buy_and_hold import BuyAndHold
from engine.strategies.lookahead import LookaheadFinding, check_no_lookahead, find_lookahead
from engine.strategies.ml_basic import MlBasic, MlBasicParams, params_from_metadata, round_trip_cost
from engine.strategies.registry import STRATEGIES, get_strategy, strategy_spec

__all__ = [
    "STRATEGIES",
    "BuyAndHold",
    "LookaheadError",
    "LookaheadFinding",
    "MlBasic",
    "MlBasicParams",
    "Predictor",
    "Strategy",
    "StrategyError",
    "UnknownStrategyError",
    "check_no_lookahead",
    "find_lookahead",
    "get_strategy",
    "params_from_metadata",
    "round_trip_cost",
    "strategy_spec",
]
