"""PSR and DSR against Bailey & López de Prado (2014)'s worked example, and their refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.backtest.deflated import (
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe_significance,
)

# The paper's example (section "A numerical example"): an annualised Sharpe of 2.5 measured
# on 1,250 daily returns with skew -3 and kurtosis 10, the best of N = 100 trials whose
# annualised Sharpe ratios have variance 0.5. The paper finds E[max SR] = 0.1132 (daily)
# and DSR = 0.9004.
DAYS = 250
SR = 2.5 / math.sqrt(DAYS)
VARIANCE = 0.5 / DAYS


def test_expected_maximum_matches_the_paper() -> None:
    assert expected_max_sharpe(100, VARIANCE) == pytest.approx(0.1132, abs=5e-5)


def test_dsr_matches_the_paper() -> None:
    sr0 = expected_max_sharpe(100, VARIANCE)
    assert probabilistic_sharpe(SR, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-4)


def test_more_trials_deflate_more() -> None:
    rng = np.random.default_rng(7)
    returns = rng.normal(0.001, 0.01, 2000)
    one, many = (sharpe_significance(returns, benchmark_sharpe=0.0, trials=n) for n in (1, 500))
    assert one.dsr == pytest.approx(one.psr)
    assert many.dsr < one.dsr


def test_noise_has_a_low_dsr_after_many_trials() -> None:
    rng = np.random.default_rng(3)
    result = sharpe_significance(rng.normal(0, 0.01, 2160), benchmark_sharpe=0.0, trials=50)
    assert result.dsr is not None and result.dsr < 0.95


@pytest.mark.parametrize(
    ("returns", "reason"),
    [
        (np.full(100, 0.001), "zero variance"),
        (np.array([0.01, -0.01, 0.02]), "too few returns: 3"),
    ],
)
def test_cannot_compute_is_none_with_a_reason(returns: np.ndarray, reason: str) -> None:
    result = sharpe_significance(returns, benchmark_sharpe=0.0, trials=3)
    assert result.psr is None and result.dsr is None
    assert reason in result.reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psr_and_dsr_agree_with_an_independent_scipy_computation(seed: int) -> None:
    """Moments, PSR and E[max SR] recomputed with scipy.stats, to 1e-9, on the same returns.

    scipy's biased skew and Pearson kurtosis are the paper's moments; its normal CDF and
    quantile function replace the statistics module the product uses.
    """
    stats = pytest.importorskip("scipy.stats")
    from engine.backtest.deflated import return_moments

    rng = np.random.default_rng(seed)
    returns = rng.standard_t(df=4, size=2000) * 0.01 + 0.0004
    moments = return_moments(returns)
    assert not isinstance(moments, str)
    sharpe = returns.mean() / returns.std(ddof=1)
    skew = stats.skew(returns, bias=True)
    kurt = stats.kurtosis(returns, fisher=False, bias=True)
    assert moments.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert moments.skew == pytest.approx(skew, rel=1e-9)
    assert moments.kurtosis == pytest.approx(kurt, rel=1e-9)

    benchmark = 0.01
    z = (sharpe - benchmark) * math.sqrt(len(returns) - 1)
    z /= math.sqrt(1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2)
    psr = probabilistic_sharpe(moments.sharpe, benchmark, moments.n, moments.skew, moments.kurtosis)
    assert psr == pytest.approx(stats.norm.cdf(z), rel=1e-9)

    n_trials, variance = 37, 0.002
    gamma = 0.5772156649015329
    expected = math.sqrt(variance) * (
        (1 - gamma) * stats.norm.ppf(1 - 1 / n_trials)
        + gamma * stats.norm.ppf(1 - 1 / (n_trials * math.e))
    )
    assert expected_max_sharpe(n_trials, variance) == pytest.approx(expected, rel=1e-9)
