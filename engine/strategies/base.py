"""What a strategy and a model predictor look like to the backtester and the live engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd


class StrategyError(ValueError):
    """A strategy cannot be built or produced unusable targets."""


class UnknownStrategyError(StrategyError):
    """No strategy is registered under the requested name."""


class LookaheadError(StrategyError):
    """A strategy's decision on a bar changed when later bars were added: it reads the future."""


@runtime_checkable
class Predictor(Protocol):
    """A model: one prediction (next-bar log return) per bar, from that bar and earlier ones.

    `engine.inference.OnnxPredictor` is the real one; tests use small fakes.
    """

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series: ...


class Strategy(Protocol):
    """Turns candles (and sentiment) into a target position per bar, decided at its close."""

    name: str

    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series: ...
