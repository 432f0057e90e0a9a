"""One concern: the execution simulator: a target position per bar in, equity and trades out.

The execution simulator: candles plus a target position per bar in, equity and trades out.

It knows nothing of strategies. The rules (also in docs/backtest.md):

- ``targets[t]`` is the position wanted after bar ``t`` closes, as a signed fraction of equity.
  It is executed at the open of bar ``t + 1``; a target on the last bar is never executed.
- An order is sent only when the target changes. Between changes the quantity is held (the
  weight drifts with the price); after a stop or take-profit exit the position stays flat
  until the target changes again.
- Every fill is the reference price moved against the trade by ``slippage_bps``; every fill
  pays ``fee_bps`` of its notional. The fee is paid out of the position being built, so a
  target ``w`` leaves ``quantity * fill = w * (equity_before - fee)``: a long 1.0 spends
  exactly all the cash, never more.
- Stops and take-profits (fractions of the average entry price) are checked inside every bar
  the position is held, the entry bar included, against its high and low. A bar that opens
  through a level fills at the open (a gap through a stop fills at the open, worse than the
  stop); otherwise, when the range touches both levels, the stop is taken (we cannot know which
  came first, so we assume the worse).
- Equity is marked to market at every close. A position still open after the last bar is
  valued at the last close and reported with exit_reason ``"open"`` and no exit fee.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest.costs import BPS
from engine.backtest.errors import BacktestError
from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS

PRICE_COLUMNS = ("open", "high", "low", "close")
TRADE_COLUMNS = [
    "entry_time",
    "exit_time",
    "side",
    "quantity",
    "entry_price",
    "exit_price",
    "entry_equity",
    "fees",
    "pnl",
    "return",
    "exit_reason",
    "bars_held",
]
EXIT_SIGNAL, EXIT_STOP, EXIT_TAKE_PROFIT, EXIT_OPEN = "signal", "stop_loss", "take_profit", "open"


@dataclass(frozen=True)
class SimulationConfig:
    """Costs, sizing limits and protective exits of one simulation."""

    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    initial_equity: float = 10_000.0
    allow_short: bool = False
    max_leverage: float = 1.0
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise BacktestError(f"{name} must be a finite number >= 0, got {value}")
        if not np.isfinite(self.initial_equity) or self.initial_equity <= 0:
            raise BacktestError(f"initial_equity must be > 0, got {self.initial_equity}")
        if not np.isfinite(self.max_leverage) or self.max_leverage <= 0:
            raise BacktestError(f"max_leverage must be > 0, got {self.max_leverage}")
        for name in ("stop_loss_pct", "take_profit_pct"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and 0 < value < 1):
                raise BacktestError(f"{name} must be a fraction between 0 and 1, got {value}")

    @property
    def has_exits(self) -> bool:
        return self.stop_loss_pct is not None or self.take_profit_pct is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BacktestResult:
    """What one simulation produced; `metrics` also holds `buy_and_hold` over the same bars."""

    equity: pd.Series
    position: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, Any]
    config: SimulationConfig
    targets: pd.Series = field(repr=False)
    buy_and_hold_equity: pd.Series | None = field(default=None, repr=False)

    @property
    def final_equity(self) -> float:
        return float(self.equity.iloc[-1])


# ---------------------------------------------------------------------------------------------
# Input checks


def validate_candles(candles: pd.DataFrame) -> None:
    """Raise BacktestError naming the first problem that would make a simulation meaningless."""
    if not isinstance(candles, pd.DataFrame):
        raise BacktestError(f"candles must be a pandas DataFrame, got {type(candles).__name__}")
    if len(candles) == 0:
        raise BacktestError("candles: no data in the window (0 bars)")
    missing = [c for c in PRICE_COLUMNS if c not in candles.columns]
    if missing:
        raise BacktestError(f"candles: missing column(s) {missing}")
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise BacktestError("candles: index must be a DatetimeIndex of bar open times")
    if not candles.index.is_monotonic_increasing or not candles.index.is_unique:
        raise BacktestError("candles: index must be sorted and unique")
    prices = candles.loc[:, list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise BacktestError(
            f"candles: {PRICE_COLUMNS[col]} at {candles.index[row]} is not a positive number "
            f"({prices[row, col]})"
        )
    o, h, lo, c = prices.T
    inconsistent = (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    if inconsistent.any():
        row = int(np.flatnonzero(inconsistent)[0])
        raise BacktestError(
            f"candles: bar at {candles.index[row]} has high/low outside its open/close "
            f"(o={o[row]}, h={h[row]}, l={lo[row]}, c={c[row]})"
        )


def _target_array(
    candles: pd.DataFrame, targets: pd.Series | np.ndarray, config: SimulationConfig
) -> np.ndarray:
    if isinstance(targets, pd.Series):
        if not targets.index.equals(candles.index):
            raise BacktestError("targets must be indexed exactly like the candles")
        values = targets.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(targets, dtype=np.float64)
        if values.shape != (len(candles),):
            raise BacktestError(
                f"targets: expected {len(candles)} values, got shape {values.shape}"
            )
    bad = ~np.isfinite(values)
    if bad.any():
        raise BacktestError(
            f"targets: not a finite number at {candles.index[int(np.flatnonzero(bad)[0])]}"
        )
    if not config.allow_short and (values < 0).any():
        at = candles.index[int(np.flatnonzero(values < 0)[0])]
        raise BacktestError(f"targets: short position at {at} but allow_short is off")
    too_big = np.abs(values) > config.max_leverage + 1e-12
    if too_big.any():
        at = candles.index[int(np.flatnonzero(too_big)[0])]
        raise BacktestError(f"targets: |target| above max_leverage={config.max_leverage} at {at}")
    return values


# ---------------------------------------------------------------------------------------------
# Protective exits, shared by both paths


@dataclass(frozen=True)
class _Bars:
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


def _exit_levels(entry: np.ndarray | float, side: np.ndarray | float, config: SimulationConfig):
    """Stop and take-profit prices for positions entered at `entry` (NaN when not used)."""
    sl = np.nan if config.stop_loss_pct is None else config.stop_loss_pct
    tp = np.nan if config.take_profit_pct is None else config.take_profit_pct
    return entry * (1.0 - side * sl), entry * (1.0 + side * tp)


def _exit_hits(bars: _Bars, sl: slice | np.ndarray, side, stop, target):
    """Per bar: (opens through stop, opens through target, touches stop, touches target)."""
    o, h, lo = bars.open[sl], bars.high[sl], bars.low[sl]
    adverse = np.where(side > 0, lo, h)
    favourable = np.where(side > 0, h, lo)
    with np.errstate(invalid="ignore"):
        gap_stop = side * (o - stop) <= 0
        gap_target = side * (o - target) >= 0
        touch_stop = side * (adverse - stop) <= 0
        touch_target = side * (favourable - target) >= 0
    return gap_stop, gap_target, touch_stop, touch_target


def _exit_fill(gap_stop, gap_target, touch_stop, open_, stop, target):
    """Raw exit price and reason of a hit bar: gaps fill at the open, stop before target."""
    price = np.where(gap_stop | gap_target, open_, np.where(touch_stop, stop, target))
    stopped = gap_stop | (~gap_target & touch_stop)
    return price, stopped


# ---------------------------------------------------------------------------------------------
# Simulation


def simulate(
    candles: pd.DataFrame,
    targets: pd.Series | np.ndarray,
    config: SimulationConfig | None = None,
    *,
    with_buy_and_hold: bool = True,
) -> BacktestResult:
    """Execute `targets` (decided at each close) at the next opens of `candles`; see module doc."""
    from engine.backtest.metrics import compute_metrics  # metrics imports this module's types

    config = config or SimulationConfig()
    validate_candles(candles)
    wanted = _target_array(candles, targets, config)
    bars = _Bars(*(candles[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS))
    cash, quantity, trades = _run_core(bars, wanted, config)
    equity = pd.Series(cash + quantity * bars.close, index=candles.index, name="equity")
    position = pd.Series(quantity, index=candles.index, name="position")
    trades_frame = _trades_frame(trades, candles.index)
    target_series = pd.Series(wanted, index=candles.index, name="target")
    metrics = compute_metrics(equity, trades_frame, position, config.initial_equity)
    hold_equity = None
    if with_buy_and_hold:
        hold = simulate(
            candles, np.ones(len(candles)), _without_exits(config), with_buy_and_hold=False
        )
        metrics["buy_and_hold"] = hold.metrics
        hold_equity = hold.equity
    return BacktestResult(
        equity, position, trades_frame, metrics, config, target_series, hold_equity
    )


def simulate_equity(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: SimulationConfig | None = None,
) -> np.ndarray:
    """The equity curve alone, from plain float64 arrays: `simulate` without the frames, the
    trade list and the metrics (the inputs are not checked; `simulate` checks them). What a
    peer's `from_signals(...).value()` computes: benchmarks/bench_backtest.py times the two
    on the same arrays."""
    config = config or SimulationConfig()
    bars = _Bars(open_, high, low, close)
    cash, quantity, _trades = _run_core(bars, np.asarray(targets, dtype=np.float64), config)
    return cash + quantity * bars.close


def _run_core(
    bars: _Bars, wanted: np.ndarray, config: SimulationConfig
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(cash, quantity) held during each bar, and the trades, for targets decided at closes."""
    in_force = np.concatenate(([0.0], wanted[:-1]))  # the target acting from each bar's open
    previous = np.concatenate(([0.0], in_force[:-1]))
    changes = in_force != previous
    through_flat = not np.any(changes & (previous != 0) & (in_force != 0))
    run = _simulate_via_flat if through_flat else _simulate_event_loop
    seg_start, seg_cash, seg_qty, trades = run(bars, in_force, changes, config)
    segment = np.searchsorted(seg_start, np.arange(len(wanted)), side="right") - 1
    return seg_cash[segment], seg_qty[segment], trades


def _without_exits(config: SimulationConfig) -> SimulationConfig:
    return SimulationConfig(
        fee_bps=config.fee_bps,
        slippage_bps=config.slippage_bps,
        initial_equity=config.initial_equity,
    )


def _simulate_via_flat(
    bars: _Bars, in_force: np.ndarray, changes: np.ndarray, config: SimulationConfig
):
    """Vectorised path for target series whose every change goes to or from flat.

    Each position is then an independent round trip whose result, as a multiple of the equity
    at its entry, needs no earlier state; equity before each trade is a cumulative product.
    """
    n = len(in_force)
    slip, fee_rate = config.slippage_bps * BPS, config.fee_bps * BPS
    starts = np.flatnonzero(changes & (in_force != 0))
    if not len(starts):
        return np.zeros(1, dtype=np.int64), np.array([config.initial_equity]), np.zeros(1), []
    change_bars = np.append(np.flatnonzero(changes), n)  # n: the trade is still open at the end
    ends = change_bars[np.searchsorted(change_bars, starts, side="right")]

    weight = in_force[starts]
    side = np.sign(weight)
    entry = bars.open[starts] * (1.0 + side * slip)
    qty = weight / (entry * (1.0 + np.abs(weight) * fee_rate))  # per unit of entry equity
    entry_fee = fee_rate * np.abs(qty) * entry
    cash = 1.0 - qty * entry - entry_fee

    exit_bar = ends.copy()
    reason = np.where(ends < n, EXIT_SIGNAL, EXIT_OPEN).astype(object)
    raw_exit = np.where(ends < n, bars.open[np.minimum(ends, n - 1)], np.nan)
    if config.has_exits and len(starts):
        _apply_exits_vectorised(bars, starts, ends, side, entry, config, exit_bar, reason, raw_exit)

    closed = reason != EXIT_OPEN
    exit_price = np.where(closed, raw_exit * (1.0 - side * slip), bars.close[-1])
    exit_fee = np.where(closed, fee_rate * np.abs(qty) * exit_price, 0.0)
    value_after = cash + qty * exit_price - exit_fee
    growth = np.concatenate(([1.0], np.cumprod(value_after)[:-1]))
    entry_equity = config.initial_equity * growth
    equity_after = entry_equity * value_after

    # Segments: flat from bar 0, then for each trade: held from entry, flat from exit.
    seg_start = np.empty(1 + 2 * len(starts), dtype=np.int64)
    seg_cash = np.empty_like(seg_start, dtype=np.float64)
    seg_qty = np.zeros_like(seg_cash)
    seg_start[0], seg_cash[0] = 0, config.initial_equity
    seg_start[1::2], seg_cash[1::2], seg_qty[1::2] = starts, entry_equity * cash, entry_equity * qty
    seg_start[2::2], seg_cash[2::2] = np.minimum(exit_bar, n), equity_after
    keep = seg_start < n  # an open trade has no flat segment after it
    trades = {
        "entry_bar": starts,
        "exit_bar": np.minimum(exit_bar, n - 1),
        "side": side,
        "quantity": np.abs(qty) * entry_equity,
        "entry_price": entry,
        "exit_price": exit_price,
        "entry_equity": entry_equity,
        "fees": (entry_fee + exit_fee) * entry_equity,
        "pnl": equity_after - entry_equity,
        "exit_reason": reason,
        "bars_held": np.where(closed, exit_bar, n) - starts,
    }
    return seg_start[keep], seg_cash[keep], seg_qty[keep], trades


def _apply_exits_vectorised(
    bars, starts, ends, side, entry, config, exit_bar, reason, raw_exit
) -> None:
    """Find each trade's first stop/target bar in one pass over all bars; update in place."""
    n = len(bars.open)
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, ends, -1)
    held = np.cumsum(marks[:n]) > 0
    trade_of_bar = np.cumsum(np.bincount(starts, minlength=n)[:n]) - 1
    held_bars = np.flatnonzero(held)
    owner = trade_of_bar[held_bars]
    stop, target = _exit_levels(entry, side, config)
    gap_stop, gap_target, touch_stop, touch_target = _exit_hits(
        bars, held_bars, side[owner], stop[owner], target[owner]
    )
    hit_positions = np.flatnonzero(touch_stop | touch_target)
    hit_bars = held_bars[hit_positions]
    first = np.searchsorted(hit_bars, starts)
    found = first < len(hit_bars)
    found[found] &= hit_bars[first[found]] < ends[found]
    trade_ids = np.flatnonzero(found)
    where = hit_positions[first[found]]
    price, stopped = _exit_fill(
        gap_stop[where],
        gap_target[where],
        touch_stop[where],
        bars.open[held_bars[where]],
        stop[trade_ids],
        target[trade_ids],
    )
    exit_bar[trade_ids] = held_bars[where]
    raw_exit[trade_ids] = price
    reason[trade_ids] = np.where(stopped, EXIT_STOP, EXIT_TAKE_PROFIT)


class _OpenTrade:
    """Book-keeping of one position from flat (or a flip) until it is flat again."""

    def __init__(self, bar: int, side: float, equity: float) -> None:
        self.entry_bar, self.side, self.entry_equity = bar, side, equity
        self.bought_qty = self.bought_value = self.sold_qty = self.sold_value = 0.0
        self.max_qty = self.fees = self.cash_flow = 0.0

    def fill(self, qty_change: float, price: float, fee_paid: float, position_after: float) -> None:
        opening = qty_change * self.side > 0
        if opening:
            self.bought_qty += abs(qty_change)
            self.bought_value += abs(qty_change) * price
        else:
            self.sold_qty += abs(qty_change)
            self.sold_value += abs(qty_change) * price
        self.fees += fee_paid
        self.cash_flow -= qty_change * price + fee_paid
        self.max_qty = max(self.max_qty, abs(position_after))

    @property
    def average_entry(self) -> float:
        return self.bought_value / self.bought_qty

    def record(
        self, exit_bar: int, exit_price: float, reason: str, position: float, bars_held: int
    ):
        pnl = self.cash_flow + position * exit_price  # position is 0 once closed
        average_exit = self.sold_value / self.sold_qty if self.sold_qty else exit_price
        return {
            "entry_bar": self.entry_bar,
            "exit_bar": exit_bar,
            "side": self.side,
            "quantity": self.max_qty,
            "entry_price": self.average_entry,
            "exit_price": exit_price if reason == EXIT_OPEN else average_exit,
            "entry_equity": self.entry_equity,
            "fees": self.fees,
            "pnl": pnl,
            "exit_reason": reason,
            "bars_held": bars_held,
        }


def _simulate_event_loop(
    bars: _Bars, in_force: np.ndarray, changes: np.ndarray, config: SimulationConfig
):
    """General path (partial resizes, flips): a loop over target changes, not over bars.

    Stops are searched with numpy over the bars between two changes.
    """
    n = len(in_force)
    slip, fee_rate = config.slippage_bps * BPS, config.fee_bps * BPS
    cash, qty = config.initial_equity, 0.0
    seg_start, seg_cash, seg_qty = [0], [cash], [0.0]
    records: list[dict[str, Any]] = []
    trade: _OpenTrade | None = None
    checked_from = 0  # first bar whose range the current position's exits have not seen

    def close_by_exit(until: int) -> None:
        nonlocal cash, qty, trade
        if trade is None or not config.has_exits or checked_from >= until:
            return
        stop, target = _exit_levels(trade.average_entry, trade.side, config)
        span = slice(checked_from, until)
        gap_stop, gap_target, touch_stop, touch_target = _exit_hits(
            bars, span, trade.side, stop, target
        )
        hits = np.flatnonzero(touch_stop | touch_target)
        if not len(hits):
            return
        k = int(hits[0])
        bar = checked_from + k
        price, stopped = _exit_fill(
            gap_stop[k], gap_target[k], touch_stop[k], bars.open[bar], stop, target
        )
        fill = float(price) * (1.0 - trade.side * slip)
        fee_paid = fee_rate * abs(qty) * fill
        trade.fill(-qty, fill, fee_paid, 0.0)
        cash += qty * fill - fee_paid
        qty = 0.0
        reason = EXIT_STOP if stopped else EXIT_TAKE_PROFIT
        records.append(trade.record(bar, fill, reason, 0.0, bar - trade.entry_bar))
        trade = None
        seg_start.append(bar)
        seg_cash.append(cash)
        seg_qty.append(0.0)

    for bar in map(int, np.flatnonzero(changes)):  # plain ints: bar numbers index and count
        close_by_exit(bar)
        weight = float(in_force[bar])
        if qty == 0.0 and weight == 0.0:
            continue
        open_ = bars.open[bar]
        equity = cash + qty * open_
        buy, sell = open_ * (1.0 + slip), open_ * (1.0 - slip)
        if weight == 0.0:
            change, price = -qty, (sell if qty > 0 else buy)
        elif weight * equity > qty * buy:
            change, price = (weight * equity - qty * buy) / (buy * (1.0 + weight * fee_rate)), buy
        elif weight * equity < qty * sell:
            change, price = (
                (weight * equity - qty * sell) / (sell * (1.0 - weight * fee_rate)),
                sell,
            )
        else:
            continue  # inside the slippage band: no order would move towards the target
        new_qty = qty + change
        if trade is not None and (new_qty == 0.0 or np.sign(new_qty) != trade.side):
            closing_fee = fee_rate * abs(qty) * price
            trade.fill(-qty, price, closing_fee, 0.0)
            cash += qty * price - closing_fee
            records.append(trade.record(bar, price, EXIT_SIGNAL, 0.0, bar - trade.entry_bar))
            trade, change, qty = None, new_qty, 0.0
        if change != 0.0:
            if trade is None:
                trade = _OpenTrade(bar, float(np.sign(change)), cash + qty * open_)
            fee_paid = fee_rate * abs(change) * price
            trade.fill(change, price, fee_paid, new_qty)
            cash -= change * price + fee_paid
        qty = new_qty
        checked_from = bar
        seg_start.append(bar)
        seg_cash.append(cash)
        seg_qty.append(qty)
    close_by_exit(n)
    if trade is not None:
        records.append(trade.record(n - 1, bars.close[-1], EXIT_OPEN, qty, n - trade.entry_bar))
    return np.array(seg_start), np.array(seg_cash), np.array(seg_qty), records


def _trades_frame(
    trades: dict[str, np.ndarray] | list[dict[str, Any]], index: pd.DatetimeIndex
) -> pd.DataFrame:
    frame = pd.DataFrame(trades)
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in TRADE_COLUMNS})
        for c in ("quantity", "entry_price", "exit_price", "entry_equity", "fees", "pnl", "return"):
            frame[c] = frame[c].astype(np.float64)
        frame["entry_time"] = pd.DatetimeIndex([], tz=index.tz)
        frame["exit_time"] = pd.DatetimeIndex([], tz=index.tz)
        frame["bars_held"] = frame["bars_held"].astype(np.int64)
        return frame
    frame["entry_time"] = index[frame.pop("entry_bar").to_numpy(dtype=np.int64)]
    frame["exit_time"] = index[frame.pop("exit_bar").to_numpy(dtype=np.int64)]
    frame["side"] = np.where(frame["side"].to_numpy() > 0, "long", "short")
    frame["return"] = frame["pnl"] / frame["entry_equity"]
    frame["bars_held"] = frame["bars_held"].astype(np.int64)
    return frame.loc[:, TRADE_COLUMNS]
