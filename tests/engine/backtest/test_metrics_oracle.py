"""Sharpe, Sortino, CAGR and max drawdown agree with an independent implementation.

The oracle is empyrical-reloaded (dev requirements only). Its conventions, matched here
explicitly rather than by loosening the tolerance:

- annualisation: empyrical defaults to 252 trading days; we pass our own bars per year
  (hourly crypto: 365.25 * 24 = 8766) as ``annualization``;
- returns: both use simple bar-to-bar returns, risk-free rate 0, Sharpe with ``ddof=1``,
  Sortino's downside deviation as the root mean square of the negative part over all bars;
- CAGR: both take ``len(returns) / bars_per_year`` as the number of years;
- max drawdown: empyrical reports it as a negative fraction measured from a starting value
  before the first bar; ours is the same drawdown as a positive fraction, so we compare
  ours with ``-empyrical``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.backtest.metrics import bars_per_year, compute_metrics

empyrical = pytest.importorskip("empyrical", reason="empyrical-reloaded is in requirements/dev")

TOLERANCE = {"rel": 1e-9, "abs": 1e-12}
INITIAL_EQUITY = 10_000.0


def _no_trades() -> pd.DataFrame:
    return pd.DataFrame({"pnl": [], "return": [], "fees": []}, dtype=np.float64)


def _metrics_for(returns: np.ndarray, freq: str) -> tuple[dict, float]:
    index = pd.date_range("2023-01-01", periods=len(returns), freq=freq, tz="UTC")
    equity = pd.Series(INITIAL_EQUITY * np.cumprod(1.0 + returns), index=index)
    position = pd.Series(np.ones(len(returns)), index=index)
    metrics = compute_metrics(equity, _no_trades(), position, INITIAL_EQUITY)
    return metrics, bars_per_year(index)


def _returns(seed: int, n: int, drift: float, vol: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(drift, vol, n)


CASES = [
    pytest.param(_returns(1, 8766, 0.0002, 0.01), "h", id="hourly-year-gaining"),
    pytest.param(_returns(2, 5000, -0.0003, 0.02), "h", id="hourly-losing"),
    pytest.param(_returns(3, 1100, 0.001, 0.03), "D", id="daily-three-years"),
    pytest.param(_returns(4, 300, 0.0, 0.005), "15min", id="15min-flat"),
]


@pytest.mark.parametrize(("returns", "freq"), CASES)
def test_metrics_match_empyrical(returns: np.ndarray, freq: str) -> None:
    metrics, per_year = _metrics_for(returns, freq)
    series = pd.Series(returns)

    assert metrics["sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(series, annualization=per_year), **TOLERANCE
    )
    assert metrics["sortino"] == pytest.approx(
        empyrical.sortino_ratio(series, annualization=per_year), **TOLERANCE
    )
    assert metrics["cagr"] == pytest.approx(
        empyrical.cagr(series, annualization=per_year), **TOLERANCE
    )
    assert metrics["max_drawdown"] == pytest.approx(-empyrical.max_drawdown(series), **TOLERANCE)
    assert metrics["total_return"] == pytest.approx(
        empyrical.cum_returns_final(series), **TOLERANCE
    )


def test_annualisation_is_ours_not_empyricals_default() -> None:
    """The oracle with its 252-day default would disagree: the convention is really checked."""
    returns = _returns(5, 2000, 0.0001, 0.01)
    metrics, per_year = _metrics_for(returns, "h")
    assert per_year == pytest.approx(8766.0)
    assert metrics["sharpe"] != pytest.approx(empyrical.sharpe_ratio(pd.Series(returns)), rel=1e-3)


def test_drawdown_from_a_loss_on_the_first_bar_counts_the_initial_equity() -> None:
    """Both measure the first bar's loss from the initial equity, not from the first close."""
    returns = np.array([-0.10, 0.05, -0.20, 0.30, 0.01])
    metrics, _ = _metrics_for(returns, "h")
    # The peak stays the initial equity until bar 3: the worst is bar 2's close.
    expected_worst = 1.0 - 0.9 * 1.05 * 0.8
    assert metrics["max_drawdown"] == pytest.approx(expected_worst, **TOLERANCE)
    assert metrics["max_drawdown"] == pytest.approx(
        -empyrical.max_drawdown(pd.Series(returns)), **TOLERANCE
    )
