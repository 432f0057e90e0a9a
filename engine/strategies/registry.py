"""Strategies by name, as the command line and the registry refer to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.strategies.base import Predictor, Strategy, StrategyError, UnknownStrategyError
from engine.strategies.buy_and_hold import BuyAndHold
from engine.strategies.ml_basic import MlBasic, params_from_metadata


@dataclass(frozen=True)
class StrategySpec:
    factory: Callable[..., Strategy]
    needs_model: bool
    description: str
    # The version's metadata["strategy"] holds this strategy's parameters.
    reads_metadata: bool = False


STRATEGIES: dict[str, StrategySpec] = {
    "ml_basic": StrategySpec(
        lambda predictor, fee_bps, slippage_bps, **params: MlBasic(
            predictor, fee_bps=fee_bps, slippage_bps=slippage_bps, **params
        ),
        needs_model=True,
        description="enters when the model's edge beats a round trip, holds while it stays "
        "above an exit level (hysteresis), else flat",
        reads_metadata=True,
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
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    **params: Any,
) -> Strategy:
    """Build the strategy registered as `name`; model strategies need a `predictor`.

    For ml_basic the parameters come from ``predictor.metadata["strategy"]`` (defaults when
    the version predates it), overridden by any given in `params`.
    """
    spec = strategy_spec(name)
    if spec.needs_model and predictor is None:
        raise StrategyError(f"strategy {name!r} needs a model (predictor or model directory)")
    if spec.reads_metadata:
        # Backtest, paper and live all build through here, so all read the same recorded
        # parameters; an explicit parameter (an operator's experiment) overrides one.
        metadata = getattr(predictor, "metadata", None)
        recorded = params_from_metadata(metadata if isinstance(metadata, dict) else None)
        if "threshold" in params:  # the older single-level rule replaces both recorded levels
            recorded = {k: v for k, v in recorded.items() if k not in ("entry", "exit")}
        params = {**recorded, **params}
    try:
        return spec.factory(predictor, fee_bps, slippage_bps, **params)
    except TypeError as error:
        raise StrategyError(
            f"strategy {name!r}: bad parameters {sorted(params)}: {error}"
        ) from None
