"""The live engine's model input: ring buffers of the newest candles, no pandas.

At each close the engine appends the bar's numbers to fixed numpy buffers and asks for the
window that ends at it. The window is computed by the kernels the batch path uses
(engine.features.kernels: `feature_matrix` over the last `window` rows, then the same
normalisation), over arrays holding exactly the bars the batch path's `latest_model_input`
would be given, so it is the same bits (tests/engine/features/test_live_features.py
proves it on every bar of the shipped history, for every feature set and horizon).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.features.kernels import (
    SENTIMENT_SCALE,
    CandleArrays,
    FeatureError,
    feature_matrix,
    feature_params_from_metadata,
    required_history,
)

_FIELDS = ("open", "high", "low", "close", "volume")


class LiveFeatureWindow:
    """The newest bars in ring buffers, each bar's price features computed once, when it
    arrives, and the model input ending at the newest bar."""

    def __init__(self, metadata: Mapping[str, Any], *, step_ns: int) -> None:
        self.params = feature_params_from_metadata(metadata)
        self.window = int(metadata["window"])
        self.history = required_history(metadata)
        self.step_ns = int(step_ns)
        names = self.params.feature_names
        normalization = metadata["normalization"]
        missing = [
            n for n in names if n not in normalization["mean"] or n not in normalization["std"]
        ]
        if missing:
            raise FeatureError(f"normalisation has no mean/std for feature(s) {missing}")
        # normalize_matrix's arrays, built once rather than at every bar.
        self._mean = np.array([normalization["mean"][n] for n in names], dtype="float64")
        self._std = np.array([normalization["std"][n] for n in names], dtype="float64")
        # Price features of a bar never change once it has closed: computed at append, kept.
        # Sentiment is joined at each decision, as the batch path does, because a refreshed
        # Fear & Greed series can give an earlier close a value it did not have yet.
        self._price_params = dataclasses.replace(self.params, use_sentiment=False)
        width = len(self._price_params.feature_names)
        # Each value is written twice, at i and i + size, so the newest `size` values are
        # always one contiguous slice: no copy, no reordering per bar.
        self._values = np.zeros((len(_FIELDS), 2 * self.history), dtype="float64")
        self._open_ns = np.zeros(2 * self.history, dtype="int64")
        self._rows = np.full((2 * self.window, width), np.nan, dtype="float64")
        self.count = 0

    def append(self, open_ns: int, values: tuple[float, float, float, float, float]) -> None:
        """A closed bar: into the buffers, and its price features computed."""
        at = self.count % self.history
        self._values[:, at] = values
        self._values[:, at + self.history] = values
        self._open_ns[at] = self._open_ns[at + self.history] = open_ns
        self.count += 1
        row = feature_matrix(self.arrays(), None, self._price_params, last=1)[0]
        at = (self.count - 1) % self.window
        self._rows[at] = self._rows[at + self.window] = row

    def arrays(self) -> CandleArrays:
        """The bars held, oldest first (views into the buffers, valid until the next append)."""
        return CandleArrays(
            self._open_ns[self._span(self.history)], *self._values[:, self._span(self.history)]
        )

    def _span(self, size: int) -> slice:
        held = min(self.count, size)
        end = self.count % size + size if self.count >= size else held
        return slice(end - held, end)

    def latest(self, sentiment: Any | None = None) -> np.ndarray:
        """The normalised float32 window [1, window, n_features] ending at the newest bar.

        FeatureError, as the batch path raises it, when there is not enough history, a gap,
        or a missing value (sentiment too old, for one).
        """
        if self.count < self.history:
            raise FeatureError(f"needs {self.history} bars of history, got {self.count}")
        open_ns = self._open_ns[self._span(self.history)]
        steps = np.diff(open_ns)
        if (steps != self.step_ns).any():
            raise FeatureError(
                f"candles have {int((steps != self.step_ns).sum())} unrepaired gap(s) in the "
                f"last {self.history} bars; repair the series in the data store before "
                "computing features"
            )
        raw = self._rows[self._span(self.window)]
        if self.params.use_sentiment:
            if sentiment is None:
                raise FeatureError("this feature set uses sentiment: pass the fear_greed series")
            from engine.data.join import sentiment_at_closes  # pandas: sentiment models only

            # The history has no gap, so its usual step (the batch path's close) is step_ns.
            closes = open_ns[-self.window :] + self.step_ns
            column = sentiment_at_closes(closes, sentiment) / SENTIMENT_SCALE
            raw = np.column_stack([raw, column])
        matrix = ((raw - self._mean) / self._std).astype("float32")
        if not np.isfinite(matrix).all():
            raise FeatureError(
                f"no complete feature window ends at the last bar (needs {self.history} bars "
                "without missing values)"
            )
        return matrix[np.newaxis]
