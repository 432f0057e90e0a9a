"""Performance metrics of an equity curve and its trades.

Conventions: returns are simple bar-to-bar returns of the equity marked at each close, the
first one measured from the initial equity; risk-free rate 0; annualisation uses the bar
interval (crypto trades every hour of the year: 365.25 days). Ratios that divide by zero are
``inf`` (or 0.0 when the numerator is not positive); the JSON report writes ``inf`` as null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def bars_per_year(index: pd.DatetimeIndex) -> float:
    """Bars in a year at this index's typical spacing (the median, robust to gaps)."""
    if len(index) < 2:
        return float("nan")
    step = np.median(np.diff(index.asi8)) / 1e9
    return float(SECONDS_PER_YEAR / step)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else 0.0


def _drawdown(equity: np.ndarray, initial: float) -> tuple[np.ndarray, float, int]:
    """Drawdown per bar, its maximum, and the longest stretch (bars) spent below a peak."""
    peaks = np.maximum.accumulate(np.concatenate(([initial], equity)))[1:]
    drawdown = 1.0 - equity / peaks
    under = drawdown > 0
    longest = 0
    if under.any():
        # Lengths of runs of consecutive bars under water.
        edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
        run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int((run_ends - run_starts).max())
    return drawdown, float(drawdown.max()), longest


def drawdown_series(equity: pd.Series, initial_equity: float) -> pd.Series:
    values, _, _ = _drawdown(equity.to_numpy(dtype=np.float64), initial_equity)
    return pd.Series(values, index=equity.index, name="drawdown")


def per_bar_returns(equity: pd.Series, initial_equity: float) -> np.ndarray:
    """Simple returns of the equity marked at each close, the first from the initial equity."""
    values = equity.to_numpy(dtype=np.float64)
    return values / np.concatenate(([initial_equity], values[:-1])) - 1.0


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    position: pd.Series,
    initial_equity: float,
) -> dict[str, Any]:
    """The metric set every report shows (see module doc for conventions)."""
    values = equity.to_numpy(dtype=np.float64)
    per_year = bars_per_year(equity.index)
    returns = per_bar_returns(equity, initial_equity)
    final = float(values[-1])
    total_return = final / initial_equity - 1.0
    years = len(values) / per_year if np.isfinite(per_year) else float("nan")
    cagr = (
        float((final / initial_equity) ** (1.0 / years) - 1.0) if final > 0 and years > 0 else -1.0
    )
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    mean = float(returns.mean())
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    scale = math.sqrt(per_year) if np.isfinite(per_year) else float("nan")
    _, max_dd, dd_bars = _drawdown(values, initial_equity)
    bar_days = float(365.25 / per_year) if np.isfinite(per_year) else float("nan")

    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    return {
        "start": equity.index[0].isoformat(),
        "end": equity.index[-1].isoformat(),
        "n_bars": len(values),
        "initial_equity": float(initial_equity),
        "final_equity": final,
        "total_return": total_return,
        "cagr": cagr,
        "sharpe": _ratio(mean, std) * scale if std > 0 else 0.0,
        "sortino": _ratio(mean, downside) * scale,
        "calmar": _ratio(cagr, max_dd),
        "max_drawdown": max_dd,
        "max_drawdown_duration_bars": dd_bars,
        "max_drawdown_duration_days": dd_bars * bar_days,
        "n_trades": len(pnl),
        "win_rate": len(wins) / len(pnl) if len(pnl) else 0.0,
        "profit_factor": _ratio(float(wins.sum()), float(-losses.sum())),
        "expectancy": float(pnl.mean()) if len(pnl) else 0.0,
        "avg_trade_return": float(trades["return"].mean()) if len(pnl) else 0.0,
        "exposure": float(np.mean(position.to_numpy() != 0)),
        "fees_paid": float(trades["fees"].sum()),
    }
