"""One concern: the engine loop: one closed candle in, at most one order and one decision out.

The engine loop: one closed candle in, at most one order and one decision out.

Per candle, in this order (the backtester's semantics, docs/interfaces.md):
1. the target decided at the previous bar's close is executed at this bar's open;
2. the bar is added to history, equity is marked at its close and the daily loss
   is checked (a breach latches the kill switch, which flattens at the close);
3. the model predicts from this bar and earlier ones, the strategy turns that into a
   target position (a fraction of equity), which waits for the next bar's open.

Every step that changes what the engine holds or intends (cash, position, a pending
target that would trade, the day's start equity, the kill switch) ends with a fsynced
`state` record, so a restart resumes exactly where it left off and never executes one
decision twice. A step that changes none of it writes no state record: on a restart that
bar is processed again and decides the same, which is safe because it traded nothing.

The decision itself runs without pandas when the strategy has a live decider
(engine.live.decider: ml_basic, buy_and_hold); any other strategy is given a frame.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.live.brokers import BUY, SELL, Broker, Fill, OrderOutcomeUnknown, OrderRefused
from engine.live.candles import Candle, CandleBuffer, epoch_ns
from engine.live.decider import LiveDecider
from engine.live.feeds import FeedItem
from engine.live.journal import Journal
from engine.live.risk import RiskManager
from engine.live.sentiment import LiveSentiment
from engine.live.status import StatusReporter
from engine.live.strategy import LatestPredictor

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("engine.live")

# Below this notional a rebalance is rounding noise, not a trade.
MIN_TRADE_NOTIONAL = 1e-6
BPS = 1e-4
# While a restart replays bars it already processed, status is still written this often.
CATCH_UP_STATUS_SECONDS = 1.0


def order_quantity(
    *,
    weight: float,
    cash: float,
    quantity: float,
    price: float,
    slippage_bps: float,
    fee_bps: float,
) -> float | None:
    """Signed quantity to trade to hold `weight` of equity, or None inside the slippage band.

    The same sizing as engine.backtest.simulator: the fee is paid out of the position being
    built, so a long 1.0 spends exactly all the cash.
    """
    slip, fee_rate = slippage_bps * BPS, fee_bps * BPS
    if weight == 0.0:
        return -quantity if quantity != 0.0 else None
    equity = cash + quantity * price
    buy, sell = price * (1.0 + slip), price * (1.0 - slip)
    if weight * equity > quantity * buy:
        return (weight * equity - quantity * buy) / (buy * (1.0 + weight * fee_rate))
    if weight * equity < quantity * sell:
        return (weight * equity - quantity * sell) / (sell * (1.0 - weight * fee_rate))
    return None


class Strategy(Protocol):
    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series: ...


@dataclass(frozen=True)
class Trade:
    time: datetime
    side: str
    quantity: float
    price: float
    fee: float
    reason: str


@dataclass
class StepResult:
    candle: str
    prediction: float | None = None
    target: float | None = None
    fills: list[Fill] = field(default_factory=list)
    skipped: str | None = None


class TradingEngine:
    def __init__(
        self,
        *,
        strategy: Strategy,
        predictor: LatestPredictor | None,
        broker: Broker,
        journal: Journal,
        risk: RiskManager,
        status: StatusReporter,
        symbol: str,
        interval: timedelta,
        history_size: int,
        initial_cash: float,
        sentiment: pd.Series | LiveSentiment | None = None,
        execute_on_close: bool = False,
        fee_bps: float = DEFAULT_FEE_BPS,
        slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
        stop_event: threading.Event | None = None,
        use_decider: bool = True,
    ) -> None:
        # Sizing assumes these costs; the paper broker charges the same ones.
        self.fee_bps = fee_bps
        self.slippage_bps = slippage_bps
        # Replayed bars fill at the next bar's open, as the backtester does. On a live feed
        # the next bar opens as this one closes, so the order goes out at once
        # (execute_on_close) rather than an interval later.
        self.execute_on_close = execute_on_close
        self.strategy = strategy
        self.predictor = predictor
        self.allow_short = False  # spot trading
        self.broker = broker
        self.journal = journal
        self.risk = risk
        self.status = status
        self.symbol = symbol
        self.interval = interval
        self.last_data_at: str | None = None
        self.feed_error: str | None = None  # the last poll round's failure, shown in status
        self._catch_up_published_at = float("-inf")
        self.sentiment = sentiment
        self.buffer = CandleBuffer(history_size)
        self.stop_event = stop_event or threading.Event()
        self.trades: list[Trade] = []
        self._step_started = 0.0
        # Candle in to target decided (before journal and status), for the benchmark and logs.
        self.last_decision_seconds: float | None = None
        self.equity_curve: list[tuple[datetime, float]] = []
        # The pandas-free decision (None: this strategy decides from a frame).
        self.decider = (
            LiveDecider.for_strategy(
                strategy,
                predictor.model if predictor is not None else None,
                history_size=history_size,
                step_ns=epoch_ns(datetime(1970, 1, 1, tzinfo=UTC) + interval),
            )
            if use_decider
            else None
        )

        restored = journal.state
        self.cash = initial_cash if restored.cash is None else restored.cash
        self.quantity = restored.quantity
        self.last_candle: datetime | None = (
            datetime.fromisoformat(restored.last_candle) if restored.last_candle else None
        )
        self.pending_target = restored.pending_target
        self.current_target = restored.current_target
        self.day = restored.day
        self.day_start_equity = restored.day_start_equity
        self.last_equity = restored.equity
        self.kill_switch = restored.kill_switch
        self._saved_state: tuple[Any, ...] | None = None  # what the last state record holds
        if restored.unsettled_orders:
            log.warning(
                "journal %s has orders without a fill or refusal record: %s "
                "(interrupted mid-order; position is taken from the last state record)",
                journal.path,
                ", ".join(restored.unsettled_orders),
            )

    # ---- public ---------------------------------------------------------------

    def resumed(self) -> bool:
        return self.last_candle is not None

    def sync_balances(self, cash: float, quantity: float) -> None:
        """Live mode: the exchange's balances are the truth, not our bookkeeping."""
        if not math.isclose(quantity, self.quantity, rel_tol=1e-6, abs_tol=1e-9):
            log.warning(
                "position from journal %.8f differs from exchange %.8f; using the exchange's",
                self.quantity,
                quantity,
            )
        self.cash, self.quantity = cash, quantity

    def run(self, feed: Iterable[FeedItem]) -> None:
        """Consume the feed until it ends or stop() is called; SIGTERM lands between steps."""
        for item in feed:
            # Any item ends a poll round; only a failed round carries an error.
            self.feed_error = item.error
            if item.candle is None:
                self.publish_status()
            else:
                self.on_candle(item.candle, tradable=item.tradable)
            if self.stop_event.is_set():
                break

    def stop(self) -> None:
        self.stop_event.set()

    def on_candle(self, candle: Candle, *, tradable: bool = True) -> StepResult:
        self._step_started = time.perf_counter()
        # Any candle from the feed, even one already processed, proves market data flows.
        self.last_data_at = datetime.now(UTC).isoformat()
        result = StepResult(candle=candle.key)
        problem = candle.problem()
        if problem is not None:
            log.error("bad candle %s %s: %s; not trading on it", self.symbol, candle.key, problem)
            result.skipped = f"bad candle: {problem}"
            return result
        if self.last_candle is not None and candle.open_time <= self.last_candle:
            self._prime(candle)
            # A restart replays bars it already processed; the health check must still see
            # data arriving meanwhile, or a healthy engine catching up looks dead.
            self._publish_status_at_most_every(CATCH_UP_STATUS_SECONDS)
            result.skipped = "already processed"
            return result
        self._warn_on_gap(candle)
        if tradable:
            result.fills.extend(self._execute_at_open(candle))
        else:
            log.debug("candle %s: history only (warm-up or catch-up), no trading", candle.key)
            self.pending_target = None
        self._remember(candle)
        equity = self._mark(candle)
        if tradable and not self.kill_switch:
            result.fills.extend(self._check_daily_loss(candle, equity))
        if tradable and not self.kill_switch:
            result.prediction, result.target = self._decide(candle)
            if self.execute_on_close:
                target, self.pending_target = self.pending_target, None
                if target is not None:
                    result.fills.extend(
                        self._rebalance(target, candle, price=candle.close, reason="signal")
                    )
        self.last_candle = candle.open_time
        self._save_state(equity=self.cash + self.quantity * candle.close)
        self.publish_status()
        return result

    def _publish_status_at_most_every(self, seconds: float) -> None:
        now = time.monotonic()
        if now - self._catch_up_published_at >= seconds:
            self._catch_up_published_at = now
            self.publish_status()

    def publish_status(self) -> None:
        self.status.publish(
            state="halted" if self.kill_switch else "running",
            last_candle=self.last_candle.isoformat() if self.last_candle is not None else None,
            last_data_at=self.last_data_at,
            feed_error=self.feed_error,
            position=self.quantity,
            equity=self.last_equity,
            kill_switch=self.kill_switch,
        )

    # ---- steps ----------------------------------------------------------------

    def _prime(self, candle: Candle) -> None:
        """Bars already processed before a restart only rebuild the history buffer."""
        newest = self.buffer.last_open_time
        if newest is None or candle.open_time > newest:
            self._remember(candle)
            return
        if candle.open_time == self.last_candle:
            log.warning("duplicate candle %s ignored (already processed)", candle.key)

    def _remember(self, candle: Candle) -> None:
        self.buffer.append(candle)
        if self.decider is not None:
            self.decider.observe(candle)

    def _warn_on_gap(self, candle: Candle) -> None:
        if self.last_candle is None:
            return
        expected = self.last_candle + self.interval
        if candle.open_time > expected:
            missing = int((candle.open_time - expected) / self.interval)
            log.error(
                "gap in %s candles: %d missing between %s and %s",
                self.symbol,
                missing,
                self.last_candle.isoformat(),
                candle.key,
            )

    def _execute_at_open(self, candle: Candle) -> list[Fill]:
        if self.kill_switch:
            self.pending_target = None
            if abs(self.quantity) >= max(self.broker.min_quantity(candle.open), 1e-12):
                return self._rebalance(0.0, candle, price=candle.open, reason="kill_switch")
            return []
        if self.pending_target is None:
            return []
        target, self.pending_target = self.pending_target, None
        fills = self._rebalance(target, candle, price=candle.open, reason="signal")
        # A state record between the fill and the close step: a crash here must not make
        # the restarted engine execute the same decision again.
        self._save_state(equity=self.cash + self.quantity * candle.open)
        return fills

    def _mark(self, candle: Candle) -> float:
        equity = self.cash + self.quantity * candle.close
        day = (candle.open_time + self.interval).date().isoformat()
        if day != self.day:
            self.day = day
            self.day_start_equity = self.last_equity if self.last_equity is not None else equity
        self.last_equity = equity
        self.equity_curve.append((candle.open_time, equity))
        return equity

    def _check_daily_loss(self, candle: Candle, equity: float) -> list[Fill]:
        assert self.day_start_equity is not None
        check = self.risk.daily_loss(day_start_equity=self.day_start_equity, equity=equity)
        if not check.breached:
            return []
        reason = (
            f"daily loss {check.loss:.2f} reached max_daily_loss {check.limit:.2f} on {self.day}"
        )
        log.critical("kill switch latched: %s; flattening and stopping trading", reason)
        self.kill_switch = True
        self.pending_target = None
        self.journal.append("kill_switch", latched=True, reason=reason, candle=candle.key)
        fills = self._rebalance(0.0, candle, price=candle.close, reason="kill_switch")
        self.last_equity = self.cash + self.quantity * candle.close
        return fills

    def _sentiment_now(self) -> pd.Series | None:  # a Series: sentiment models bring pandas
        if isinstance(self.sentiment, LiveSentiment):
            return self.sentiment.current()
        return self.sentiment

    def _decide(self, candle: Candle) -> tuple[float | None, float | None]:
        prediction, target, error = self._target_for_newest_bar()
        self.last_decision_seconds = time.perf_counter() - self._step_started
        if error is not None:
            # Bad or incomplete data: keep the position rather than act on a guess.
            log.error("no decision at %s: %s", candle.key, error)
            return None, None
        if not math.isfinite(target):
            log.error("strategy gave a non-finite target %r at %s; no decision", target, candle.key)
            return prediction, None
        if target < 0 and not self.allow_short:
            log.error(
                "strategy wants a short (%s) at %s on a spot account; flat instead",
                target,
                candle.key,
            )
            target = 0.0
        self.pending_target = target
        self.journal.append(
            "decision",
            sync=False,  # made durable by the state record that closes this step
            candle=candle.key,
            prediction=None if prediction is None or math.isnan(prediction) else prediction,
            target=target,
        )
        return prediction, target

    def _target_for_newest_bar(self) -> tuple[float | None, float, str | None]:
        """(prediction, target, why there is no decision) for the newest bar in history."""
        sentiment = self._sentiment_now()
        if self.decider is not None:
            decision = self.decider.decide(sentiment)
            prediction = decision.prediction if self.predictor is not None else None
            return prediction, decision.target, decision.error
        target = float(self.strategy.targets(self.buffer.frame(), sentiment).iloc[-1])
        if self.predictor is None:
            return None, target, None
        return self.predictor.last, target, self.predictor.error

    def _rebalance(self, target: float, candle: Candle, *, price: float, reason: str) -> list[Fill]:
        if reason == "signal" and target == self.current_target:
            return []
        change = order_quantity(
            weight=target,
            cash=self.cash,
            quantity=self.quantity,
            price=price,
            slippage_bps=self.slippage_bps,
            fee_bps=self.fee_bps,
        )
        if change is not None:
            capped = self.risk.cap_quantity(self.quantity + change, price)
            if capped != self.quantity + change:
                log.warning(
                    "target %.4f capped by max_position_notional to %.8f %s",
                    target, capped, self.symbol,
                )  # fmt: skip
            change = capped - self.quantity
        if change is None or abs(change) * price < MIN_TRADE_NOTIONAL:
            self.current_target = target
            return []
        if target == 0.0 and abs(change) < self.broker.min_quantity(price):
            # What is left after rounding to the lot step cannot be sold: it is flat.
            log.info(
                "position %.8f %s is below the exchange minimum: flat", self.quantity, self.symbol
            )
            self.current_target = target
            return []
        side = BUY if change > 0 else SELL
        quantity = abs(change)
        # Deterministic and unique: Binance deduplicates on newClientOrderId.
        order_id = (
            f"{self.symbol.lower()}-{int(candle.open_time.timestamp())}"
            f"-{self.journal.state.records + 1}"
        )
        if reason != "kill_switch":  # reducing risk is never rate-limited
            refusal = self.risk.order_refusal(candle.open_time)
            if refusal is not None:
                self._refuse(order_id, candle, side, quantity, refusal)
                return []
        self.journal.append(
            "order",
            order_id=order_id,
            candle=candle.key,
            side=side,
            quantity=quantity,
            reason=reason,
            reference_price=price,  # what the sizing and the risk cap assumed
        )
        try:
            fill = self.broker.market_order(
                order_id=order_id, side=side, quantity=quantity, reference_price=price
            )
        except OrderRefused as exc:
            self._refuse(order_id, candle, side, quantity, str(exc))
            return []
        except OrderOutcomeUnknown as exc:
            self._resync_after_unknown_outcome(order_id, candle, side, quantity, exc)
            return []
        self.risk.record_order(candle.open_time)
        self._apply_fill(fill)
        self.journal.append(
            "fill",
            order_id=fill.order_id,
            candle=candle.key,
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
            base_fee=fill.base_fee,
        )
        log.info(
            "fill %s %s %.8f %s at %.2f fee %.4f (%s)",
            fill.order_id, fill.side, fill.quantity, self.symbol, fill.price, fill.fee, reason,
        )  # fmt: skip
        self.trades.append(
            Trade(candle.open_time, fill.side, fill.quantity, fill.price, fill.fee, reason)
        )
        self.current_target = target
        return [fill]

    def _refuse(self, order_id: str, candle: Candle, side: str, quantity: float, why: str) -> None:
        log.error("order %s %s %.8f %s refused: %s", order_id, side, quantity, self.symbol, why)
        self.journal.append(
            "order_rejected",
            order_id=order_id,
            candle=candle.key,
            side=side,
            quantity=quantity,
            reason=why,
        )

    def _resync_after_unknown_outcome(
        self, order_id: str, candle: Candle, side: str, quantity: float, exc: Exception
    ) -> None:
        log.critical("%s; re-reading balances from the exchange", exc)
        self.risk.record_order(candle.open_time)  # it may have counted against the limit
        balances = getattr(self.broker, "balances", None)
        reason = str(exc)
        try:
            if balances is not None:
                self.sync_balances(*balances())
                reason += f"; position re-read from the exchange: {self.quantity:.8f}"
        except Exception as resync_error:  # any failure here must end up in the journal
            reason += f"; balances could not be re-read ({resync_error}): position unknown"
            log.critical("position unknown after order %s: %s", order_id, resync_error)
        self.journal.append(
            "order_unknown", order_id=order_id, candle=candle.key, side=side,
            quantity=quantity, reason=reason,
        )  # fmt: skip

    def _apply_fill(self, fill: Fill) -> None:
        signed = fill.quantity if fill.side == BUY else -fill.quantity
        self.quantity += signed - fill.base_fee
        self.cash -= signed * fill.price + fill.fee

    def _save_state(self, *, equity: float) -> None:
        """A fsynced state record, when what it holds changed since the last one.

        The candle time and the equity mark alone are not a change: a restart re-processes
        such a bar, and it decides the same without trading. A pending target equal to the
        current one is not either: executing it trades nothing.
        """
        pending = None if self.pending_target == self.current_target else self.pending_target
        holds = (
            self.cash, self.quantity, pending, self.current_target, self.day,
            self.day_start_equity, self.kill_switch,
        )  # fmt: skip
        if holds == self._saved_state:
            return
        self._saved_state = holds
        self.journal.append(
            "state",
            last_candle=self.last_candle.isoformat() if self.last_candle is not None else None,
            cash=self.cash,
            quantity=self.quantity,
            pending_target=self.pending_target,
            current_target=self.current_target,
            equity=equity,
            day=self.day,
            day_start_equity=self.day_start_equity,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "cash": self.cash,
            "quantity": self.quantity,
            "last_candle": self.last_candle.isoformat() if self.last_candle else None,
            "pending_target": self.pending_target,
            "kill_switch": self.kill_switch,
        }


__all__ = ["SELL", "StepResult", "Trade", "TradingEngine"]
