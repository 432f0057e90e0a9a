"""Strategies: candles (and a model) in, a target position per bar out.

Names are imported on first use (engine._lazy): the engine starts without pandas.
"""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.strategies.base import (
        LookaheadError,
        Predictor,
        Strategy,
        StrategyError,
        UnknownStrategyError,
    )
    from engine.strategies.buy_and_hold import BuyAndHold
    from engine.strategies.lookahead import LookaheadFinding, check_no_lookahead, find_lookahead
    from engine.strategies.ml_basic import (
        MlBasic,
        MlBasicParams,
        params_from_metadata,
        round_trip_cost,
    )
    from engine.strategies.registry import STRATEGIES, get_strategy, strategy_spec

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "engine.strategies.base": (
            "LookaheadError",
            "Predictor",
            "Strategy",
            "StrategyError",
            "UnknownStrategyError",
        ),
        "engine.strategies.buy_and_hold": ("BuyAndHold",),
        "engine.strategies.lookahead": (
            "LookaheadFinding",
            "check_no_lookahead",
            "find_lookahead",
        ),
        "engine.strategies.ml_basic": (
            "MlBasic",
            "MlBasicParams",
            "params_from_metadata",
            "round_trip_cost",
        ),
        "engine.strategies.registry": (
            "STRATEGIES",
            "get_strategy",
            "strategy_spec",
        ),
    },
)

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
