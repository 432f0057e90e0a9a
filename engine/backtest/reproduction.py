"""Does a version's file come from the training procedure its metadata records? (#28)

Fold evidence judges a version's recorded training configuration, re-fitted on the bars
before each fold; the file deployed is the model that configuration made from the version's
own training bars. What binds the two is reproduction: the recorded configuration, re-fitted
on the recorded training bars, must give the file's predictions. Training is seeded, and on
this machine a re-fit gives identical predictions, with TensorFlow's oneDNN kernels on or off.
A file trained otherwise does not: another seed, or 90 more days of training data, changed
the position on about a quarter of 290 days' bars (docs/backtest.md, "Reproduction").

Arithmetic alone moves a re-fit only a little: with TensorFlow's intra-op threads at 8
instead of 2 the predictions moved by up to 0.0019 but correlated at 0.99992, and the
positions agreed on 99.2% of bars (at 1 or 16 threads: 2e-7, the same positions). A re-fit of
another procedure moves a lot: another seed, 75% of positions and a correlation of 0.58; 90
more days of data, 78% and 0.82. Between the two lies ``close``: correlation at least
``CLOSE_CORRELATION`` and positions the same on at least ``CLOSE_AGREEMENT`` of the bars,
what a file trained on another machine may show. Anything further ``differs``: the file was
trained otherwise than it records, and its fold evidence is not its own. The comparison is
here, free of Django, and runs beside the folds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.strategies import Predictor, get_strategy

REPRODUCES = "reproduces"
CLOSE = "close"
DIFFERS = "differs"
UNCHECKED = "unchecked"
STATUSES = (REPRODUCES, CLOSE, DIFFERS, UNCHECKED)
# Arithmetic differences measured here stayed above both (0.99992, 99.2%); a change of
# procedure fell far below (0.58 to 0.82, 75% to 78%): benchmarks/bench_reproduction.py.
CLOSE_CORRELATION = 0.999
CLOSE_AGREEMENT = 0.98
# The tolerance training itself allows between the Keras model and its ONNX export.
PREDICTION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Reproduction:
    """The outcome of re-fitting a version's recorded procedure and comparing it to its file."""

    status: str
    bars: int = 0
    max_difference: float | None = None
    agreement: float | None = None  # share of bars on which both take the same position
    correlation: float | None = None  # of the two models' predictions
    window: tuple[str, str] | None = None
    reason: str = ""

    @classmethod
    def unchecked(cls, reason: str) -> Reproduction:
        return cls(UNCHECKED, reason=reason)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Reproduction | None:
        if not isinstance(data, Mapping) or data.get("status") not in STATUSES:
            return None
        window = data.get("window")
        return cls(
            status=str(data["status"]),
            bars=int(data.get("bars") or 0),
            max_difference=_number(data.get("max_difference")),
            agreement=_number(data.get("agreement")),
            correlation=_number(data.get("correlation")),
            window=(str(window[0]), str(window[1])) if window else None,
            reason=str(data.get("reason") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window"] = list(self.window) if self.window else None
        return data

    def sentence(self) -> str:
        """What the decision pages say of it, in one sentence."""
        if self.status == REPRODUCES:
            return (
                "its file reproduces from its recorded training configuration: a re-fit on its "
                f"recorded training bars gives the same predictions on {self.bars:,} bars of the "
                f"last fold (largest difference {self.max_difference or 0:.1g}), so the fold "
                "evidence is evidence about this file's procedure"
            )
        if self.status == CLOSE:
            return (
                "its file reproduces from its recorded training configuration to within "
                "arithmetic: a re-fit on its recorded training bars takes the same position on "
                f"{(self.agreement or 0):.1%} of {self.bars:,} bars of the last fold, predictions "
                f"correlated at {(self.correlation or 0):.5f} (largest difference "
                f"{self.max_difference or 0:.2g}), as a file trained on another machine may"
            )
        if self.status == DIFFERS:
            return (
                "its file does NOT reproduce from its recorded training configuration: a re-fit "
                f"on its recorded training bars takes the same position on "
                f"{(self.agreement or 0):.0%} of {self.bars:,} bars of the last fold, predictions "
                f"correlated at {(self.correlation or 0):.2f} (largest difference "
                f"{self.max_difference or 0:.2g}). The fold evidence "
                "judges that configuration; a file trained otherwise (other data, another "
                "seed or procedure) does not inherit it"
            )
        return (
            "whether its file reproduces from its recorded training configuration was not "
            f"checked ({self.reason or 'no reason recorded'})"
        )

    @property
    def warns(self) -> bool:
        return self.status in (DIFFERS, UNCHECKED)


def compare_to_refit(
    file_model: Predictor,
    refit_model: Predictor,
    history: pd.DataFrame,
    sentiment: pd.Series | None,
    *,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    strategy: str,
    fee_bps: float,
    slippage_bps: float,
) -> Reproduction:
    """Both models' predictions and positions on the bars in [start, stop) of `history`."""
    history = history.loc[: stop - pd.Timedelta(microseconds=1)]
    bars = history.loc[start:].index
    if bars.empty:
        return Reproduction.unchecked(f"no stored bars between {start} and {stop}")
    ours = _predictions(file_model, history, sentiment).loc[bars]
    theirs = _predictions(refit_model, history, sentiment).loc[bars]
    both = ours.notna() & theirs.notna()
    if not both.any():
        return Reproduction.unchecked("neither model predicts on the compared bars")
    difference = float(np.max(np.abs(ours[both].to_numpy() - theirs[both].to_numpy())))
    positions = [
        _positions(model, history, sentiment, bars, strategy, fee_bps, slippage_bps)
        for model in (file_model, refit_model)
    ]
    agreement = float((positions[0] == positions[1]).mean())
    correlation = prediction_correlation(ours[both].to_numpy(), theirs[both].to_numpy())
    return Reproduction(
        status=reproduction_status(difference, agreement, correlation),
        bars=int(both.sum()),
        max_difference=difference,
        agreement=agreement,
        correlation=correlation,
        window=(bars[0].isoformat(), bars[-1].isoformat()),
    )


def reproduction_status(difference: float, agreement: float, correlation: float) -> str:
    if difference <= PREDICTION_TOLERANCE and agreement == 1.0:
        return REPRODUCES
    if correlation >= CLOSE_CORRELATION and agreement >= CLOSE_AGREEMENT:
        return CLOSE
    return DIFFERS


def prediction_correlation(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Pearson's correlation; two constant series are alike only if they are equal."""
    if np.std(ours) == 0 or np.std(theirs) == 0:
        return 1.0 if np.array_equal(ours, theirs) else 0.0
    return float(np.corrcoef(ours, theirs)[0, 1])


def _predictions(model: Predictor, history: pd.DataFrame, sentiment: pd.Series | None) -> Any:
    predict = getattr(model, "predict", None)
    if predict is None:
        raise TypeError(f"{type(model).__name__} cannot predict a series of bars")
    return predict(history, sentiment)


def _positions(
    model: Predictor,
    history: pd.DataFrame,
    sentiment: pd.Series | None,
    bars: pd.DatetimeIndex,
    strategy: str,
    fee_bps: float,
    slippage_bps: float,
) -> pd.Series:
    chosen = get_strategy(strategy, predictor=model, fee_bps=fee_bps, slippage_bps=slippage_bps)
    if hasattr(chosen, "decide_from"):
        chosen.decide_from = bars[0]  # both start flat, like a fold's model
    return chosen.targets(history, sentiment).loc[bars].astype(float)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
