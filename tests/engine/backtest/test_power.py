"""The power sentence (#28): the smallest annual Sharpe ratio the DSR gate sees 80% of the time.

`minimum_detectable_sharpe` is a closed-form approximation; here a simulation checks it: the
DSR of series whose true Sharpe ratio is that minimum passes the gate in about 80% of draws,
and a series at half of it passes far less often.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.backtest.deflated import (
    deflated_sharpe_at,
    minimum_detectable_sharpe,
    sharpe_significance,
)

HOURS_PER_YEAR = 8766.0


def pass_share(
    per_bar: float, *, n_bars: int, trials: int, draws: int, seed: int, dof: float | None = None
) -> float:
    """Share of simulated series (true per-bar Sharpe `per_bar`) whose DSR reaches 0.95."""
    rng = np.random.default_rng(seed)
    passed = 0
    for _ in range(draws):
        if dof is None:
            noise = rng.standard_normal(n_bars)
        else:  # Student's t, scaled to unit variance: heavy tails like hourly crypto returns
            noise = rng.standard_t(dof, n_bars) / np.sqrt(dof / (dof - 2))
        returns = 0.01 * (per_bar + noise)
        dsr = sharpe_significance(returns, benchmark_sharpe=0.0, trials=trials).dsr
        passed += dsr is not None and dsr >= 0.95
    return passed / draws


@pytest.mark.parametrize(("n_bars", "trials"), [(2160, 1), (2160, 5), (8640, 8)])
def test_the_minimum_detectable_sharpe_passes_about_80_percent_of_simulations(
    n_bars: int, trials: int
) -> None:
    found = minimum_detectable_sharpe(n_bars=n_bars, trials=trials, bars_per_year=HOURS_PER_YEAR)
    share = pass_share(found.per_bar, n_bars=n_bars, trials=trials, draws=1500, seed=n_bars)
    # 1,500 draws: the standard error of an 80% share is 1 point.
    assert share == pytest.approx(0.80, abs=0.04), share
    weaker = pass_share(found.per_bar / 2, n_bars=n_bars, trials=trials, draws=600, seed=1)
    assert weaker < 0.45


def test_heavy_tails_are_in_the_answer_and_the_simulation_agrees() -> None:
    dof, n_bars, trials = 5.0, 4320, 5
    kurtosis = 3.0 + 6.0 / (dof - 4.0)  # Student's t: 9
    found = minimum_detectable_sharpe(
        n_bars=n_bars, trials=trials, bars_per_year=HOURS_PER_YEAR, kurtosis=kurtosis
    )
    normal = minimum_detectable_sharpe(n_bars=n_bars, trials=trials, bars_per_year=HOURS_PER_YEAR)
    assert found.per_bar > normal.per_bar  # fat tails make the estimate noisier
    share = pass_share(found.per_bar, n_bars=n_bars, trials=trials, draws=1200, seed=9, dof=dof)
    assert share == pytest.approx(0.80, abs=0.06), share


def test_more_bars_detect_less_and_more_trials_detect_more() -> None:
    def annual(n_bars: int, trials: int) -> float:
        return minimum_detectable_sharpe(
            n_bars=n_bars, trials=trials, bars_per_year=HOURS_PER_YEAR
        ).annual

    assert annual(8640, 5) < annual(4320, 5) < annual(2160, 5)
    assert annual(2160, 1) < annual(2160, 5) < annual(2160, 50)


def test_the_passing_bar_is_where_the_dsr_reaches_the_threshold() -> None:
    found = minimum_detectable_sharpe(n_bars=2160, trials=5, bars_per_year=HOURS_PER_YEAR)
    at: dict = {"n_bars": 2160, "trials": 5, "skew": 0.0, "kurtosis": 3.0}
    assert deflated_sharpe_at(found.passing_sharpe_per_bar, **at) == pytest.approx(0.95, abs=1e-6)
    assert deflated_sharpe_at(found.passing_sharpe_per_bar * 0.99, **at) < 0.95


def test_the_sentence_names_the_sharpe_the_probability_and_the_trials() -> None:
    found = minimum_detectable_sharpe(n_bars=2160, trials=5, bars_per_year=HOURS_PER_YEAR)
    sentence = found.sentence()
    start = f"this evidence detects an annual Sharpe ratio of {found.annual:.1f}"
    assert sentence.startswith(start)
    assert "with 80% probability at N = 5 trials" in sentence
    assert "2,160 bars" in sentence


@pytest.mark.parametrize("bad", [{"n_bars": 10}, {"power": 1.0}, {"dsr_threshold": 0.0}])
def test_impossible_questions_are_refused(bad: dict) -> None:
    args = {"n_bars": 2160, "trials": 2, "bars_per_year": HOURS_PER_YEAR, **bad}
    with pytest.raises(ValueError):
        minimum_detectable_sharpe(**args)
