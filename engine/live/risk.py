"""Risk limits applied to every order the engine wants to place.

The limits come from the host (engine.live.config.RiskLimits), never from the model.
Time here is candle time, not wall time, so a replayed run and a live run of the same
bars take the same risk decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.live.config import RiskLimits

ONE_HOUR = timedelta(hours=1)


def utc_moment(value: datetime | str) -> datetime:
    """A candle time from the journal (ISO 8601) or a feed, as an aware UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DailyLossCheck:
    breached: bool
    loss: float
    limit: float | None


class RiskManager:
    def __init__(self, limits: RiskLimits, *, past_order_times: Iterable[str] = ()) -> None:
        self.limits = limits
        self._order_times: list[datetime] = [utc_moment(t) for t in past_order_times]

    def cap_quantity(self, quantity: float, price: float) -> float:
        """Shrink a target quantity so its notional stays within max_position_notional."""
        cap = self.limits.max_position_notional
        if cap is None or price <= 0:
            return quantity
        max_qty = cap / price
        return max(-max_qty, min(max_qty, quantity))

    def order_refusal(self, at: datetime) -> str | None:
        """Why an order at `at` would break the hourly order limit, or None if it may go."""
        limit = self.limits.max_orders_per_hour
        if limit is None:
            return None
        recent = [t for t in self._order_times if at - ONE_HOUR < t <= at]
        if len(recent) >= limit:
            return f"max_orders_per_hour={limit} reached ({len(recent)} orders in the last hour)"
        return None

    def record_order(self, at: datetime) -> None:
        self._order_times.append(at)
        # Only the last hour matters; keep the list short on a long-running host.
        cutoff = at - ONE_HOUR
        self._order_times = [t for t in self._order_times if t > cutoff]

    def daily_loss(self, *, day_start_equity: float, equity: float) -> DailyLossCheck:
        limit = self.limits.max_daily_loss
        loss = day_start_equity - equity
        return DailyLossCheck(breached=limit is not None and loss >= limit, loss=loss, limit=limit)
