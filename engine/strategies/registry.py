"""Strategies by name, as the command line and the registry refer to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.strategies.base import Predictor, Strategy, StrategyError, UnknownStrategyError
from engine.strategies.buy_and_hold import BuyAndHold
from engine.strategies.ml_basic import MlBasic


@dataclass(frozen=True)
class StrategySpec:
    factory: Callable[..., Strategy]
    needs_model: bool
    description: str


STRATEGIES: dict[str, StrategySpec] = {
    "ml_basic": StrategySpec(
        lambda predictor, fee_bps, slippage_bps, threshold=0.0: MlBasic(
            predictor, fee_bps=fee_bps, slippage_bps=slippage_bps, threshold=threshold
        ),
        needs_model=True,
        description="long when the model's predicted return beats round-trip costs, else flat",
    ),
    "buy_and_hold": StrategySpec(
        lambda predictor, fee_bps, slippage_bps: BuyAndHold(),
        needs_model=False,
        description="long 1.0 on every bar: the baseline",
    ),
}


def strategy_spec(name: str) -> StrategySpec:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; known strategies: {known}"
        ) from None


def get_strategy(
    name: str,
    *,
    predictor: Predictor | None = None,
    fee_bps: float = 10.0,
    slippage_bps: float = 5.0,
    **params: Any,
) -> Strategy:
    """Build the strategy registered as `name`; model strategies need a `predictor`."""
    spec = strategy_spec(name)
    if spec.needs_model and predictor is None:
        raise StrategyError(f"strategy {name!r} needs a model (predictor or model directory)")
    try:
        return spec.factory(predictor, fee_bps, slippage_bps, **params)
    except TypeError as error:
        raise StrategyError(
            f"strategy {name!r}: bad parameters {sorted(params)}: {error}"
        ) from None
