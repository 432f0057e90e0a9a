"""Probabilistic and Deflated Sharpe Ratios.

After David H. Bailey and Marcos López de Prado, "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5),
2014, pp. 94-107 (https://ssrn.com/abstract=2460551).

All Sharpe ratios here are per bar (not annualised), as in the paper's equations, because the
standard error of the estimate depends on the number of observations T it was measured on.

- PSR (eq. 2 of the paper): the probability that the true Sharpe ratio exceeds a benchmark
  SR*, given the estimate, the sample length, and the returns' skewness and kurtosis:
  PSR(SR*) = Phi( (SR - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) ).
- DSR (eq. 2 with SR* = SR0): the PSR against the Sharpe ratio that the best of N
  independent trials of a strategy with no skill is expected to reach (the expected-maximum
  formula, with the Euler-Mascheroni constant gamma):
  SR0 = sqrt(V[SR_n]) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e))).

A value that cannot be computed (too few returns, zero variance) is reported as None with
the reason: a gate reading it fails, it never passes by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# What the DSR measures skill against: the per-bar returns in excess of this benchmark's. A
# strategy that rides the market earns buy-and-hold's return and so no excess (#28); "cash"
# (always flat, a zero return) is the old measure, for a policy that names it.
DSR_BENCHMARKS = ("buy_and_hold", "cash")
DEFAULT_DSR_BENCHMARK = "buy_and_hold"

EULER_MASCHERONI = 0.5772156649015329
MIN_RETURNS = 30  # below this the skew and kurtosis estimates (and so the PSR) mean little

ZERO_STD = 1e-12
_NORMAL = NormalDist()


@dataclass(frozen=True)
class ReturnMoments:
    n: int
    sharpe: float  # per bar
    skew: float
    kurtosis: float  # non-excess: 3 for a normal distribution


def return_moments(returns: np.ndarray) -> ReturnMoments | str:
    """Per-bar Sharpe, skew and kurtosis of `returns`, or the reason they cannot be computed."""
    values = np.asarray(returns, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < MIN_RETURNS:
        return f"too few returns: {len(values)}, needs at least {MIN_RETURNS}"
    std = float(values.std(ddof=1))
    if not std > ZERO_STD:  # float noise of a constant series is not a variance
        return "zero variance of returns: the Sharpe ratio is undefined"
    centred = values - values.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3) / m2**1.5)
    kurtosis = float(np.mean(centred**4) / m2**2)
    return ReturnMoments(len(values), float(values.mean()) / std, skew, kurtosis)


def probabilistic_sharpe(
    sharpe: float, benchmark: float, n: int, skew: float, kurtosis: float
) -> float | None:
    """PSR(SR*) of Bailey & López de Prado (2014), eq. 2; None when the variance term is <= 0."""
    if n < 2:
        return None
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:
        return None
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] over `n_trials` skill-less trials whose Sharpe ratios have this variance.

    Bailey & López de Prado (2014), the expected-maximum formula (after eq. 2); 0 for one trial.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    gamma = EULER_MASCHERONI
    return math.sqrt(sharpe_variance) * (
        (1 - gamma) * _NORMAL.inv_cdf(1 - 1 / n_trials)
        + gamma * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e))
    )


def sharpe_variance_under_null(n: int, skew: float, kurtosis: float, sharpe: float) -> float:
    """Variance of a per-bar Sharpe estimate over n returns (the PSR's denominator, squared).

    Used as V[SR_n] when the trials' own Sharpe ratios are not known: it is the spread that
    sampling noise alone gives each trial's estimate.
    """
    return (1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2) / (n - 1)


@dataclass(frozen=True)
class SharpeSignificance:
    sharpe: float | None  # per bar
    psr: float | None  # against the benchmark's per-bar Sharpe
    dsr: float | None
    trials: int
    expected_max_sharpe: float | None
    reason: str  # why a value is None; "" when all computed

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "sharpe_per_bar": self.sharpe,
            "psr": self.psr,
            "dsr": self.dsr,
            "trials": self.trials,
            "expected_max_sharpe_per_bar": self.expected_max_sharpe,
            "significance_reason": self.reason,
        }


def sharpe_significance(
    returns: np.ndarray,
    *,
    benchmark_sharpe: float,
    trials: int,
    trial_sharpes: Sequence[float | None] | None = None,
) -> SharpeSignificance:
    """PSR against `benchmark_sharpe` (per bar) and DSR for `trials` attempts.

    V[SR_n] is the larger of the variance of the trials' per-bar Sharpe ratios (when at least
    two are known) and the sampling variance of this estimate: a handful of similar trials
    must not shrink the expected maximum below what sampling noise alone gives N trials.
    """
    trials = max(1, int(trials))
    moments = return_moments(returns)
    if isinstance(moments, str):
        return SharpeSignificance(None, None, None, trials, None, moments)
    args = (moments.n, moments.skew, moments.kurtosis)
    psr = probabilistic_sharpe(moments.sharpe, benchmark_sharpe, *args)
    variance = sharpe_variance_under_null(*args, moments.sharpe)
    known = [s for s in (trial_sharpes or []) if s is not None and math.isfinite(s)]
    if len(known) >= 2:
        variance = max(variance, float(np.var(np.asarray(known, dtype=np.float64), ddof=1)))
    sr0 = expected_max_sharpe(trials, variance)
    dsr = probabilistic_sharpe(moments.sharpe, sr0, *args)
    reason = "" if psr is not None and dsr is not None else "non-normality term is not positive"
    return SharpeSignificance(moments.sharpe, psr, dsr, trials, sr0, reason)


# --- power: the smallest edge the DSR gate sees --------------------------------------------------

DEFAULT_POWER = 0.8
_SEARCH_TOP = 1.0  # per-bar Sharpe ratio: far above anything a market gives (24 annualised/h)
_BISECTIONS = 80


@dataclass(frozen=True)
class DetectableSharpe:
    """The smallest true Sharpe ratio the DSR gate passes with probability `power`.

    Of the returns the DSR deflates (in excess of the benchmark), for evidence of `n_bars`
    bars with this skew and kurtosis, judged at `trials` counted trials against
    `dsr_threshold`.
    """

    per_bar: float
    annual: float
    power: float
    n_bars: int
    trials: int
    dsr_threshold: float
    skew: float
    kurtosis: float
    bars_per_year: float
    passing_sharpe_per_bar: float  # the smallest observed per-bar Sharpe ratio that passes

    def sentence(self) -> str:
        return (
            f"this evidence detects an annual Sharpe ratio of {self.annual:.1f} with "
            f"{self.power:.0%} probability at N = {self.trials} trial"
            f"{'' if self.trials == 1 else 's'} ({self.n_bars:,} bars, DSR threshold "
            f"{self.dsr_threshold:g})"
        )

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "annual_sharpe": self.annual,
            "per_bar_sharpe": self.per_bar,
            "power": self.power,
            "n_bars": self.n_bars,
            "trials": self.trials,
            "dsr_threshold": self.dsr_threshold,
            "skew": self.skew,
            "kurtosis": self.kurtosis,
            "bars_per_year": self.bars_per_year,
            "passing_sharpe_per_bar": self.passing_sharpe_per_bar,
            "sentence": self.sentence(),
        }


def deflated_sharpe_at(
    sharpe: float,
    *,
    n_bars: int,
    trials: int,
    skew: float,
    kurtosis: float,
    trial_sharpe_variance: float = 0.0,
) -> float:
    """The DSR `sharpe_significance` gives an observed per-bar Sharpe ratio (0: undefined)."""
    variance = max(
        sharpe_variance_under_null(n_bars, skew, kurtosis, sharpe), trial_sharpe_variance
    )
    if not variance > 0:
        return 0.0
    dsr = probabilistic_sharpe(
        sharpe, expected_max_sharpe(trials, variance), n_bars, skew, kurtosis
    )
    return 0.0 if dsr is None else dsr


def _bisect(predicate: Callable[[float], bool], low: float, high: float) -> float:
    """The smallest x in [low, high] where a monotone `predicate` turns true."""
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return high


def minimum_detectable_sharpe(
    *,
    n_bars: int,
    trials: int,
    bars_per_year: float,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    dsr_threshold: float = 0.95,
    power: float = DEFAULT_POWER,
    trial_sharpe_variance: float = 0.0,
) -> DetectableSharpe:
    """The power of the DSR gate, as the smallest true edge it sees `power` of the time.

    1. The passing bar: the smallest observed per-bar Sharpe ratio whose DSR (exactly as
       `sharpe_significance` computes it: E[max SR] under N trials, the skew and kurtosis
       terms) reaches `dsr_threshold`.
    2. The estimate of a true Sharpe ratio SR over T bars is about normal with variance
       (1 - g3 SR + (g4 - 1)/4 SR^2) / (T - 1) (Mertens 2002, the PSR's own denominator), so
       the gate passes it with probability Phi((SR - bar) sqrt(T - 1) / sqrt(that)); the
       answer is the SR where that equals `power`.
    Checked against a simulation in tests/engine/backtest/test_power.py.
    """
    if n_bars < MIN_RETURNS:
        raise ValueError(f"n_bars must be at least {MIN_RETURNS}, got {n_bars}")
    if not 0 < dsr_threshold < 1 or not 0 < power < 1:
        raise ValueError(f"dsr_threshold and power must lie in (0, 1): {dsr_threshold}, {power}")
    trials = max(1, int(trials))

    def passes(sharpe: float) -> bool:
        dsr = deflated_sharpe_at(
            sharpe,
            n_bars=n_bars,
            trials=trials,
            skew=skew,
            kurtosis=kurtosis,
            trial_sharpe_variance=trial_sharpe_variance,
        )
        return dsr >= dsr_threshold

    passing = _bisect(passes, 0.0, _SEARCH_TOP)
    target = _NORMAL.inv_cdf(power)

    def detected(true_sharpe: float) -> bool:
        spread = 1.0 - skew * true_sharpe + (kurtosis - 1.0) / 4.0 * true_sharpe**2
        spread = max(spread, ZERO_STD)
        return (true_sharpe - passing) * math.sqrt(n_bars - 1) / math.sqrt(spread) >= target

    per_bar = _bisect(detected, passing, _SEARCH_TOP)
    return DetectableSharpe(
        per_bar=per_bar,
        annual=per_bar * math.sqrt(bars_per_year),
        power=power,
        n_bars=n_bars,
        trials=trials,
        dsr_threshold=dsr_threshold,
        skew=skew,
        kurtosis=kurtosis,
        bars_per_year=bars_per_year,
        passing_sharpe_per_bar=passing,
    )
