"""The live decision without pandas: ring-buffered features, ONNX Runtime, strategy state.

The backtester and the frame path (engine.live.strategy) call `strategy.targets(frame)` and
take the newest bar; here the same strategy decides from the same numbers, one bar at a
time: features from engine.features.live (the batch kernels over the newest bars), the
model on that one window, and ml_basic's own `step` on the state it remembers. The state
follows the frame path exactly (tests/engine/live/test_decider.py runs both on the same
bars): a bar that was not decided (warm-up, catch-up, kill switch) is stepped as "no
prediction", and once the last decided bar has left the frame's history, the state starts
again from flat, as a restarted engine does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.features.kernels import FeatureError
from engine.features.live import LiveFeatureWindow
from engine.live.candles import Candle, epoch_ns


@dataclass(frozen=True)
class Decision:
    prediction: float | None
    target: float
    error: str | None = None


class LiveDecider:
    """Decides the newest bar's target for ml_basic or buy_and_hold; see `for_strategy`."""

    def __init__(
        self, strategy: Any, model: Any | None, *, history_size: int, step_ns: int
    ) -> None:
        self.strategy = strategy
        self.model = model
        self.history_size = history_size
        self.features = (
            LiveFeatureWindow(model.metadata, step_ns=step_ns) if model is not None else None
        )
        self.bars = 0  # bars seen, decided or not
        self._decided_at: int | None = None  # which bar (1-based count) was decided last
        self._state = (0.0, 0)  # ml_basic's (position, bars held) after that bar

    @classmethod
    def for_strategy(
        cls, strategy: Any, model: Any | None, *, history_size: int, step_ns: int
    ) -> LiveDecider | None:
        """A decider when this strategy has one (ml_basic on an ONNX model, buy_and_hold);
        None otherwise: the engine then uses the frame path."""
        from engine.strategies.buy_and_hold import BuyAndHold
        from engine.strategies.ml_basic import MlBasic

        if isinstance(strategy, BuyAndHold):
            return cls(strategy, None, history_size=history_size, step_ns=step_ns)
        runs_windows = callable(getattr(model, "predict_windows", None))
        if (
            isinstance(strategy, MlBasic)
            and strategy.decide_from is None
            and runs_windows
            and isinstance(getattr(model, "metadata", None), dict)
        ):
            return cls(strategy, model, history_size=history_size, step_ns=step_ns)
        return None

    def observe(self, candle: Candle) -> None:
        """A bar entered the engine's history (whether or not it will be decided)."""
        self.bars += 1
        if self.features is not None:
            self.features.append(
                epoch_ns(candle.open_time),
                (candle.open, candle.high, candle.low, candle.close, candle.volume),
            )

    def decide(self, sentiment: Any | None = None) -> Decision:
        """The target for the newest observed bar."""
        if self.model is None:  # buy_and_hold
            return Decision(None, 1.0)
        prediction, error = math.nan, None
        assert self.features is not None
        if self.features.count >= self.features.history:
            try:
                window = self.features.latest(sentiment)
                prediction = float(self.model.predict_windows(window)[0])
            except FeatureError as exc:  # gaps, stale sentiment: no decision, logged
                error = str(exc)
        position, held = self._resume()
        position, held = self.strategy.step(prediction, position, held)
        self._decided_at, self._state = self.bars, (position, held)
        return Decision(prediction, position, error)

    def _resume(self) -> tuple[float, int]:
        """The state before the newest bar, as the frame path rebuilds it from its memory."""
        first_in_frame = max(1, self.bars - self.history_size + 1)
        if self._decided_at is not None and self._decided_at >= first_in_frame:
            position, held = self._state
            skipped = range(self._decided_at + 1, self.bars)
        else:
            position, held = 0.0, 0
            skipped = range(first_in_frame, self.bars)
        for _bar in skipped:
            position, held = self.strategy.step(math.nan, position, held)
        return position, held
