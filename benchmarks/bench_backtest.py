"""Backtest benchmark: the simulator alone on one year of 1-minute bars, against vectorbt and
backtrader on the same target series and the same semantics; optionally run_backtest ml_basic.

Run with the benchmark venv (vectorbt and backtrader live only there):
    make bench   # or: var/bench-venv/bin/python benchmarks/bench_backtest.py
and, for run_backtest with a trained model (the project venv is enough):
    .venv/bin/python benchmarks/bench_backtest.py --model-dir DIR [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchmarks import _figures  # noqa: E402
from engine.backtest import SimulationConfig, run_backtest, simulate  # noqa: E402

BARS = 525_600
FEE_BPS, SLIPPAGE_BPS, CASH = 10.0, 5.0, 10_000.0


def minute_bars(n: int = BARS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.r_[30_000, close[:-1]] * np.exp(rng.normal(0, 0.0002, n))
    spread = np.abs(rng.normal(0, 0.0006, (2, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="open_time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread[0]),
            "low": np.minimum(open_, close) * (1 - spread[1]),
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def crossover_targets(candles: pd.DataFrame) -> np.ndarray:
    """Long when the 1-hour mean is above the 10-hour mean: a few thousand trades a year."""
    fast = candles["close"].rolling(60).mean()
    slow = candles["close"].rolling(600).mean()
    return (fast > slow).astype(np.float64).to_numpy()


def best_of(repeat: int, function):
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def bench_simulator(candles, targets):
    plain = SimulationConfig(fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS, initial_equity=CASH)
    stops = SimulationConfig(
        fee_bps=FEE_BPS,
        slippage_bps=SLIPPAGE_BPS,
        initial_equity=CASH,
        stop_loss_pct=0.005,
        take_profit_pct=0.01,
    )
    seconds, result = best_of(5, lambda: simulate(candles, targets, plain, with_buy_and_hold=False))
    print(
        f"simulate, no stops:   {seconds:.4f} s  trades={len(result.trades)}  "
        f"final equity={result.final_equity:.6f}"
    )
    stop_seconds, stopped = best_of(
        5, lambda: simulate(candles, targets, stops, with_buy_and_hold=False)
    )
    reasons = stopped.trades["exit_reason"].value_counts().to_dict()
    print(
        f"simulate, with stops: {stop_seconds:.4f} s  trades={len(stopped.trades)}  exits={reasons}"
    )
    rng = np.random.default_rng(1)
    noisy = (rng.random(len(candles)) > 0.5).astype(np.float64)
    noisy_seconds, noisy_result = best_of(
        3, lambda: simulate(candles, noisy, plain, with_buy_and_hold=False)
    )
    print(
        f"simulate, coin-flip targets (worst case): {noisy_seconds:.4f} s  "
        f"trades={len(noisy_result.trades)}"
    )
    return seconds, result


def bench_vectorbt(candles, targets, ours_seconds, ours):
    """vectorbt from_signals, warm, against the simulator on the same inputs, three ways:
    plain numpy arrays on both sides (the like-for-like figure), and vectorbt on the
    timezone-aware index that a DataFrame carries (most of its time is that index's setup;
    shown apart, named, so it is not mistaken for simulation speed)."""
    try:
        import vectorbt as vbt
    except ImportError:
        print("vectorbt: not installed in this interpreter (use `make bench`)")
        return None
    from engine.backtest.simulator import simulate_equity

    in_force = np.r_[0.0, targets[:-1]]  # the target acting from each bar's open
    previous = np.r_[0.0, in_force[:-1]]
    entries = (in_force == 1) & (previous == 0)
    exits = (in_force == 0) & (previous == 1)
    arrays = {c: candles[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")}
    config = SimulationConfig(fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS, initial_equity=CASH)
    costs = {"size": np.inf, "fees": FEE_BPS * 1e-4, "slippage": SLIPPAGE_BPS * 1e-4}

    def vectorbt_plain():
        portfolio = vbt.Portfolio.from_signals(
            arrays["close"], entries, exits, price=arrays["open"], init_cash=CASH, **costs
        )
        return portfolio.value()

    def vectorbt_tz_index():
        index = candles.index
        return vbt.Portfolio.from_signals(
            pd.Series(arrays["close"], index=index), pd.Series(entries, index=index),
            pd.Series(exits, index=index), price=pd.Series(arrays["open"], index=index),
            init_cash=CASH, freq="1min", **costs,
        ).value()  # fmt: skip

    def ours_plain():
        return simulate_equity(
            arrays["open"], arrays["high"], arrays["low"], arrays["close"], targets, config
        )

    for function in (vectorbt_plain, vectorbt_tz_index, ours_plain):
        function()  # numba compiles on first use; every figure is warm
    plain_seconds, plain_value = best_of(5, vectorbt_plain)
    ours_plain_seconds, ours_equity = best_of(5, ours_plain)
    tz_seconds, tz_value = best_of(1, vectorbt_tz_index)
    final = float(np.asarray(plain_value)[-1])
    agree = abs(final / ours.final_equity - 1)
    print(
        f"same plain arrays, warm: simulate_equity {ours_plain_seconds:.4f} s, vectorbt "
        f"from_signals + value() {plain_seconds:.4f} s: ratio "
        f"{plain_seconds / ours_plain_seconds:.2f}x (target >= 2x); final equity rel diff "
        f"{agree:.2e}, ours plain vs framed {abs(ours_equity[-1] / ours.final_equity - 1):.2e}"
    )
    print(
        f"vectorbt on the timezone-aware index: {tz_seconds:.4f} s "
        f"({tz_seconds / plain_seconds:.1f}x its plain-array time); full simulate() with "
        f"frames, trades and metrics {ours_seconds:.4f} s; final equity rel diff "
        f"{abs(float(np.asarray(tz_value)[-1]) / ours.final_equity - 1):.2e}"
    )
    return {"plain": plain_seconds, "ours_plain": ours_plain_seconds, "tz": tz_seconds}


def bench_backtrader(candles, targets, ours_seconds, ours):
    try:
        import backtrader as bt
    except ImportError:
        print("backtrader: not installed in this interpreter (use `make bench`)")
        return None
    fee, slip = FEE_BPS * 1e-4, SLIPPAGE_BPS * 1e-4

    rejected: list[str] = []

    class Targets(bt.Strategy):
        """Acts at each bar's open (cheat-on-open) on the target decided at the previous close."""

        def next_open(self):
            # In next_open the strategy's own length still counts the previous bar; the data's
            # includes the bar opening now (len(self) acted on the target of two closes back).
            bar = len(self.data) - 1
            wanted = targets[bar - 1] if bar >= 1 else 0.0
            held = self.position.size != 0
            if wanted == 1.0 and not held:
                price = self.data.open[0] * (1 + slip)
                # All-in to the last cent, size * price * (1 + fee) can round a few 1e-12 above
                # the cash; backtrader then rejects the order at execution (Margin) and, retried
                # bar after bar, most entries never happen. Leaving 1e-12 keeps every order.
                all_in = self.broker.getcash() / (price * (1 + fee))
                self.buy(size=all_in * (1 - 1e-12))
            elif wanted == 0.0 and held:
                self.close()

        def notify_order(self, order):
            if order.status in (order.Margin, order.Rejected, order.Canceled):
                rejected.append(
                    f"{order.getstatusname()} at {bt.num2date(order.created.dt)}: "
                    f"size {order.created.size:.8f}, cash {self.broker.getcash():.2f}"
                )

    def run():
        cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=candles.tz_localize(None)))
        cerebro.addstrategy(Targets)
        cerebro.broker.setcash(CASH)
        cerebro.broker.setcommission(commission=fee)
        cerebro.broker.set_slippage_perc(slip, slip_open=True, slip_match=True, slip_out=True)
        cerebro.broker.set_coc(False)
        cerebro.broker.set_checksubmit(
            False
        )  # an all-in order sized to the cent is not a margin call
        cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
        strategy = cerebro.run()[0]
        return strategy, cerebro.broker.getvalue()

    seconds, (strategy, final) = best_of(1, run)
    total = strategy.analyzers.trades.get_analysis().get("total", {}).get("total", 0)
    if rejected:
        print(f"backtrader rejected {len(rejected)} order(s); first: {rejected[0]}")
    print(
        f"backtrader cheat-on-open: {seconds:.2f} s  trades={total}  final equity={final:.6f}  "
        f"ratio backtrader/ours={seconds / ours_seconds:.0f}x  "
        f"agree: trades={total == len(ours.trades)} "
        f"equity rel diff={abs(final / ours.final_equity - 1):.2e}"
    )
    return seconds


def fill_missing_hours(candles: pd.DataFrame) -> pd.DataFrame:
    """The real file misses one hour; features refuse gaps, so fill it with a flat bar here."""
    full = candles.reindex(
        pd.date_range(candles.index[0], candles.index[-1], freq="1h", name="open_time")
    )
    close = full["close"].ffill()
    for column in ("open", "high", "low", "close"):
        full[column] = full[column].fillna(close)
    return full.fillna(0.0)


def bench_run_backtest(model_dir: Path, data_dir: Path) -> None:
    from engine.data.csv_import import read_kline_csv, read_sentiment_csv

    candles = fill_missing_hours(read_kline_csv(data_dir / "BTCUSDT-1h.csv", "1h"))
    sentiment = read_sentiment_csv(data_dir / "fear_greed_index.csv")
    for check in (True, False):
        started = time.perf_counter()
        run = run_backtest(
            "ml_basic",
            candles,
            sentiment=sentiment,
            model_dir=model_dir,
            start=candles.index[0],
            allow_in_sample=True,
            check_lookahead=check,
        )
        print(
            f"run_backtest ml_basic, {len(candles)} hourly bars (three years), inference "
            f"included, lookahead check {'on' if check else 'off'}: "
            f"{time.perf_counter() - started:.2f} s  trades={run.metrics['n_trades']}  "
            f"status={run.sample_status} (timing only: the model saw part of these bars)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="a trained model for the run_backtest timing"
    )
    parser.add_argument("--data-dir", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--skip-others", action="store_true", help="skip vectorbt and backtrader")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON rows here")
    args = parser.parse_args()

    candles = minute_bars()
    targets = crossover_targets(candles)
    print(
        f"{len(candles)} one-minute bars, long/flat crossover targets, "
        f"fee {FEE_BPS} bps, slippage {SLIPPAGE_BPS} bps"
    )
    seconds, ours = bench_simulator(candles, targets)
    figure = f"simulator, {len(candles):,} 1-min bars (s)"
    if args.skip_others:
        _figures.record(figure, seconds, "s")
    else:
        vectorbt = bench_vectorbt(candles, targets, seconds, ours)
        backtrader = bench_backtrader(candles, targets, seconds, ours)
        if vectorbt is not None:
            _figures.record(
                figure + ", same plain arrays, warm", vectorbt["ours_plain"], "s",
                peer=vectorbt["plain"], peer_label="vectorbt 1.0 from_signals + value()",
                target=("ratio", ">=", 2.0),
            )  # fmt: skip
            _figures.record(
                figure + ", full simulate() vs vectorbt on a tz-aware index", seconds, "s",
                peer=vectorbt["tz"], peer_label="vectorbt, timezone-index setup included",
            )  # fmt: skip
        _figures.record(
            figure + " vs backtrader",
            seconds,
            "s",
            peer=backtrader,
            peer_label="backtrader 1.9 cheat-on-open",
        )
    if args.model_dir:
        bench_run_backtest(args.model_dir, args.data_dir)
    else:
        print(
            "run_backtest ml_basic over three years: pending (pass --model-dir of a trained model)"
        )
    _figures.write(args.json)


if __name__ == "__main__":
    main()
