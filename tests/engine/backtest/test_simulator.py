"""The execution simulator: hand-computed cases and agreement with a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.backtest import costs
from engine.backtest.errors import BacktestError
from engine.backtest.simulator import SimulationConfig, simulate
from tests.engine.backtest.helpers import make_candles, random_candles
from tests.engine.backtest.reference import reference_simulate


def test_costs_move_price_against_the_trade_and_charge_notional():
    assert costs.fill_price(100.0, 1, 10) == pytest.approx(100.1)
    assert costs.fill_price(100.0, -1, 10) == pytest.approx(99.9)
    assert costs.fee(-2000.0, 10) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="fee_bps"):
        costs.fee(100.0, -1)
    with pytest.raises(ValueError, match="side"):
        costs.fill_price(100.0, 0, 1)


def test_one_long_trade_with_fee_and_slippage_by_hand():
    candles = make_candles(
        opens=[100, 100, 110, 120],
        highs=[100, 110, 121, 120],
        lows=[100, 100, 110, 118],
        closes=[100, 110, 120, 119],
    )
    config = SimulationConfig(fee_bps=10, slippage_bps=10, initial_equity=1000)
    result = simulate(candles, [1, 1, 0, 0], config)

    entry = 100 * 1.001  # bar 1 open, bought 10 bps higher
    qty = 1000 / (entry * 1.001)  # all the cash, fee included
    exit_ = 120 * 0.999  # bar 3 open, sold 10 bps lower
    final = qty * exit_ * 0.999
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1
    assert trade["entry_time"] == candles.index[1] and trade["exit_time"] == candles.index[3]
    assert trade["entry_price"] == pytest.approx(entry) and trade["exit_price"] == pytest.approx(
        exit_
    )
    assert trade["quantity"] == pytest.approx(qty)
    assert trade["fees"] == pytest.approx(0.001 * qty * (entry + exit_))
    assert trade["pnl"] == pytest.approx(final - 1000)
    assert trade["exit_reason"] == "signal"
    np.testing.assert_allclose(result.equity, [1000, qty * 110, qty * 120, final])
    assert result.metrics["n_trades"] == 1
    assert result.metrics["fees_paid"] == pytest.approx(trade["fees"])


def test_gap_through_stop_fills_at_the_open_not_the_stop():
    # Long from bar 1 at 100; stop 5% -> 95. Bar 2 opens at 90, below the stop.
    candles = make_candles(
        opens=[100, 100, 90, 91],
        highs=[100, 101, 92, 92],
        lows=[100, 99, 89, 90],
        closes=[100, 100, 91, 91],
    )
    config = SimulationConfig(fee_bps=0, slippage_bps=0, initial_equity=1000, stop_loss_pct=0.05)
    result = simulate(candles, [1, 1, 1, 1], config)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss"
    assert trade["exit_time"] == candles.index[2]
    assert trade["exit_price"] == pytest.approx(90.0)
    assert result.final_equity == pytest.approx(900.0)
    assert result.position.iloc[-1] == 0.0  # stays flat: the target did not change again


def test_bar_touching_both_stop_and_target_takes_the_stop():
    candles = make_candles(
        opens=[100, 100, 100], highs=[100, 101, 112], lows=[100, 99, 93], closes=[100, 100, 100]
    )
    config = SimulationConfig(
        fee_bps=0, slippage_bps=0, initial_equity=1000, stop_loss_pct=0.05, take_profit_pct=0.10
    )
    result = simulate(candles, [1, 1, 1], config)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == pytest.approx(95.0)
    assert result.final_equity == pytest.approx(950.0)


def test_take_profit_alone_fills_at_its_level():
    candles = make_candles(
        opens=[100, 100, 100], highs=[100, 101, 112], lows=[100, 99, 99], closes=[100, 100, 100]
    )
    config = SimulationConfig(fee_bps=0, slippage_bps=0, initial_equity=1000, take_profit_pct=0.10)
    result = simulate(candles, [1, 1, 1], config)
    assert result.trades.iloc[0]["exit_reason"] == "take_profit"
    assert result.final_equity == pytest.approx(1100.0)


def test_flat_series_keeps_equity_and_makes_no_trades():
    candles = random_candles(50, seed=1)
    result = simulate(candles, np.zeros(50), SimulationConfig(initial_equity=500))
    assert result.trades.empty
    assert (result.equity == 500).all()
    assert result.metrics["n_trades"] == 0
    assert result.metrics["max_drawdown"] == 0.0
    assert result.metrics["exposure"] == 0.0


def test_target_on_last_bar_is_never_executed():
    candles = random_candles(10, seed=2)
    result = simulate(candles, np.r_[np.zeros(9), 1.0], SimulationConfig())
    assert result.trades.empty


def test_open_position_at_end_is_marked_at_last_close_without_exit_fee():
    candles = random_candles(10, seed=3)
    result = simulate(candles, np.ones(10), SimulationConfig(fee_bps=10, slippage_bps=0))
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "open"
    assert trade["exit_price"] == candles["close"].iloc[-1]
    assert trade["fees"] == pytest.approx(0.001 * trade["quantity"] * trade["entry_price"])
    assert result.final_equity == pytest.approx(trade["entry_equity"] + trade["pnl"])


def test_buy_and_hold_metrics_are_reported_for_the_same_bars():
    candles = random_candles(100, seed=4)
    result = simulate(candles, np.zeros(100), SimulationConfig(fee_bps=0, slippage_bps=0))
    hold = result.metrics["buy_and_hold"]
    expected = candles["close"].iloc[-1] / candles["open"].iloc[1] - 1
    assert hold["total_return"] == pytest.approx(expected)
    assert hold["n_bars"] == 100


# ---- agreement with the reference loop --------------------------------------------------------

TRADE_FIELDS_EXACT = ["entry_time", "exit_time", "side", "exit_reason", "bars_held"]
TRADE_FIELDS_CLOSE = ["quantity", "entry_price", "exit_price", "fees", "pnl"]


def _random_targets(
    rng: np.random.Generator, n: int, choices: list[float], change: float
) -> np.ndarray:
    """A target series that changes on about `change` of the bars."""
    values = rng.choice(choices, size=n)
    keep = rng.random(n) > change
    keep[0] = False
    for i in np.flatnonzero(keep):
        values[i] = values[i - 1]
    return values


CASES = {
    "long_flat": ([0.0, 1.0], {}),
    "long_flat_stops": ([0.0, 1.0], {"stop_loss_pct": 0.015, "take_profit_pct": 0.02}),
    "long_short_flat": ([-1.0, 0.0, 1.0], {"allow_short": True}),
    "short_stops": ([-1.0, 0.0, 1.0], {"allow_short": True, "stop_loss_pct": 0.01}),
    "fractional": ([0.0, 0.25, 0.5, 1.0], {}),
    "fractional_stops_shorts": (
        [-0.5, 0.0, 0.3, 0.6, 1.0],
        {"allow_short": True, "stop_loss_pct": 0.02, "take_profit_pct": 0.03},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_vectorised_simulator_matches_plain_loop_trade_for_trade(case, seed):
    choices, options = CASES[case]
    rng = np.random.default_rng(seed)
    candles = random_candles(400, seed=seed)
    targets = _random_targets(rng, 400, choices, change=0.2)
    config = SimulationConfig(fee_bps=7.5, slippage_bps=3, initial_equity=10_000, **options)

    result = simulate(candles, targets, config)
    equity, trades = reference_simulate(
        candles,
        targets,
        fee_bps=7.5,
        slippage_bps=3,
        initial_equity=10_000,
        stop_loss_pct=options.get("stop_loss_pct"),
        take_profit_pct=options.get("take_profit_pct"),
    )

    assert len(trades) > 10, "the random series should trade"
    assert len(result.trades) == len(trades)
    for name in TRADE_FIELDS_EXACT:
        assert list(result.trades[name]) == list(trades[name]), name
    for name in TRADE_FIELDS_CLOSE:
        np.testing.assert_allclose(result.trades[name], trades[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9)
    assert result.final_equity == pytest.approx(equity.iloc[-1], rel=1e-9)
    if "stop_loss_pct" in options:
        assert (trades["exit_reason"] == "stop_loss").any()


def test_fast_path_and_event_loop_agree():
    """A long/flat series through the vectorised path equals the same series via the loop."""
    from engine.backtest import simulator

    candles = random_candles(300, seed=21)
    targets = _random_targets(np.random.default_rng(21), 300, [0.0, 1.0], change=0.3)
    config = SimulationConfig(stop_loss_pct=0.01, take_profit_pct=0.015)
    bars = simulator._Bars(*(candles[c].to_numpy() for c in simulator.PRICE_COLUMNS))
    in_force = np.r_[0.0, targets[:-1]]
    changes = in_force != np.r_[0.0, in_force[:-1]]
    fast = simulator._simulate_via_flat(bars, in_force, changes, config)
    loop = simulator._simulate_event_loop(bars, in_force, changes, config)
    fast_trades = simulator._trades_frame(fast[3], candles.index)
    loop_trades = simulator._trades_frame(loop[3], candles.index)
    assert list(fast_trades["exit_reason"]) == list(loop_trades["exit_reason"])
    np.testing.assert_allclose(fast_trades["pnl"], loop_trades["pnl"], rtol=1e-9)


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_raise_backtest_errors_naming_the_problem():
    candles = random_candles(5, seed=5)
    with pytest.raises(BacktestError, match="no data"):
        simulate(candles.iloc[:0], [])
    with pytest.raises(BacktestError, match="fee_bps"):
        SimulationConfig(fee_bps=-1)
    with pytest.raises(BacktestError, match="allow_short"):
        simulate(candles, [0, -1, 0, 0, 0])
    with pytest.raises(BacktestError, match="expected 5 values"):
        simulate(candles, [0, 1])
    with pytest.raises(BacktestError, match="not a finite number"):
        simulate(candles, [0, np.nan, 0, 0, 0])
    with pytest.raises(BacktestError, match="max_leverage"):
        simulate(candles, [0, 2, 0, 0, 0])
    broken = candles.copy()
    broken.iloc[2, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(BacktestError, match="close at 2024-01-01 02:00"):
        simulate(broken, np.zeros(5))
    with pytest.raises(BacktestError, match="indexed exactly"):
        simulate(candles, pd.Series(np.zeros(5)))
