"""An independent, plain-Python, bar-by-bar implementation of the documented execution rules.

Slow and obvious on purpose: the vectorised simulator must agree with it trade for trade.
It shares nothing with engine.backtest except the documented semantics.
"""

from __future__ import annotations

import math

import pandas as pd


def reference_simulate(
    candles,
    targets,
    *,
    fee_bps,
    slippage_bps,
    initial_equity,
    stop_loss_pct=None,
    take_profit_pct=None,
):
    f, s = fee_bps / 10_000, slippage_bps / 10_000
    opens, highs, lows, closes = (list(candles[c]) for c in ("open", "high", "low", "close"))
    wanted = list(targets)
    n = len(opens)
    cash, qty = float(initial_equity), 0.0
    equity_curve, trades = [], []
    trade = None  # dict while a position is open

    def new_trade(bar, side, equity):
        return {
            "entry_bar": bar,
            "side": side,
            "entry_equity": equity,
            "buy_q": 0.0,
            "buy_v": 0.0,
            "sell_q": 0.0,
            "sell_v": 0.0,
            "fees": 0.0,
            "flow": 0.0,
            "max_q": 0.0,
        }

    def book(t, dq, price, fee_paid, after):
        if dq * t["side"] > 0:
            t["buy_q"] += abs(dq)
            t["buy_v"] += abs(dq) * price
        else:
            t["sell_q"] += abs(dq)
            t["sell_v"] += abs(dq) * price
        t["fees"] += fee_paid
        t["flow"] += -dq * price - fee_paid
        t["max_q"] = max(t["max_q"], abs(after))

    def finish(t, bar, reason, held_to):
        trades.append(
            {
                "entry_bar": t["entry_bar"],
                "exit_bar": bar,
                "side": "long" if t["side"] > 0 else "short",
                "quantity": t["max_q"],
                "entry_price": t["buy_v"] / t["buy_q"],
                "exit_price": t["sell_v"] / t["sell_q"],
                "fees": t["fees"],
                "pnl": t["flow"],
                "exit_reason": reason,
                "bars_held": held_to - t["entry_bar"],
            }
        )

    for bar in range(n):
        in_force = wanted[bar - 1] if bar >= 1 else 0.0
        before = wanted[bar - 2] if bar >= 2 else 0.0
        if bar >= 1 and in_force != before and not (qty == 0.0 and in_force == 0.0):
            o = opens[bar]
            equity = cash + qty * o
            w = in_force
            new_q = None
            if w == 0.0:
                new_q, price = 0.0, (o * (1 - s) if qty > 0 else o * (1 + s))
            else:
                buy = o * (1 + s)
                candidate = w * (equity + f * qty * buy) / (buy * (1 + w * f))
                if candidate > qty:
                    new_q, price = candidate, buy
                else:
                    sell = o * (1 - s)
                    candidate = w * (equity - f * qty * sell) / (sell * (1 - w * f))
                    if candidate < qty:
                        new_q, price = candidate, sell
            if new_q is not None:
                if trade is not None and (new_q == 0.0 or (new_q > 0) != (trade["side"] > 0)):
                    fee_close = abs(qty) * price * f
                    book(trade, -qty, price, fee_close, 0.0)
                    cash += qty * price - fee_close
                    finish(trade, bar, "signal", bar)
                    trade, qty = None, 0.0
                dq = new_q - qty
                if dq != 0.0:
                    if trade is None:
                        trade = new_trade(bar, 1.0 if dq > 0 else -1.0, cash + qty * o)
                    fee_paid = abs(dq) * price * f
                    book(trade, dq, price, fee_paid, new_q)
                    cash -= dq * price + fee_paid
                qty = new_q
        if trade is not None and (stop_loss_pct is not None or take_profit_pct is not None):
            side = trade["side"]
            avg = trade["buy_v"] / trade["buy_q"]
            stop = avg * (1 - side * stop_loss_pct) if stop_loss_pct is not None else math.nan
            target = avg * (1 + side * take_profit_pct) if take_profit_pct is not None else math.nan
            o, h, lo = opens[bar], highs[bar], lows[bar]
            if side > 0:
                gap_stop, gap_target = o <= stop, o >= target
                touch_stop, touch_target = lo <= stop, h >= target
            else:
                gap_stop, gap_target = o >= stop, o <= target
                touch_stop, touch_target = h >= stop, lo <= target
            raw = reason = None
            if gap_stop:
                raw, reason = o, "stop_loss"
            elif gap_target:
                raw, reason = o, "take_profit"
            elif touch_stop:
                raw, reason = stop, "stop_loss"
            elif touch_target:
                raw, reason = target, "take_profit"
            if raw is not None:
                price = raw * (1 - side * s)
                fee_paid = abs(qty) * price * f
                book(trade, -qty, price, fee_paid, 0.0)
                cash += qty * price - fee_paid
                finish(trade, bar, reason, bar)
                trade, qty = None, 0.0
        equity_curve.append(cash + qty * closes[bar])
    if trade is not None:
        trade["flow"] += qty * closes[-1]
        trades.append(
            {
                "entry_bar": trade["entry_bar"],
                "exit_bar": n - 1,
                "side": "long" if trade["side"] > 0 else "short",
                "quantity": trade["max_q"],
                "entry_price": trade["buy_v"] / trade["buy_q"],
                "exit_price": closes[-1],
                "fees": trade["fees"],
                "pnl": trade["flow"],
                "exit_reason": "open",
                "bars_held": n - trade["entry_bar"],
            }
        )
    frame = pd.DataFrame(
        trades,
        columns=[
            "entry_bar",
            "exit_bar",
            "side",
            "quantity",
            "entry_price",
            "exit_price",
            "fees",
            "pnl",
            "exit_reason",
            "bars_held",
        ],
    )
    frame["entry_time"] = candles.index[frame["entry_bar"].astype(int)]
    frame["exit_time"] = candles.index[frame["exit_bar"].astype(int)]
    return pd.Series(equity_curve, index=candles.index), frame
