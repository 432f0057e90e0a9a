"""Brokers execute a market order and report the fill; the engine owns the portfolio.

- PaperBroker fills at the reference (next bar's open) price with the backtester's own
  slippage and fee functions, so a paper run and a backtest over the same bars agree.
  It has no client: paper mode cannot reach an order endpoint.
- LiveBroker places market orders through python-binance, rounded to the symbol's
  LOT_SIZE step and checked against MIN_NOTIONAL/NOTIONAL before anything is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, Protocol

log = logging.getLogger(__name__)

BUY = "buy"
SELL = "sell"
SIDE_SIGN = {BUY: 1, SELL: -1}  # engine.backtest.costs takes +1/-1


class OrderRefused(RuntimeError):
    """The order was not executed (filters, exchange refusal); nothing changed."""


class OrderOutcomeUnknown(RuntimeError):
    """The order was sent but no answer came back (timeout, dropped connection): it may have
    executed. The engine must learn the position from the exchange, not assume either way."""


class LiveStartError(RuntimeError):
    """Live trading must not start (keys, permissions, exchange filters)."""


@dataclass(frozen=True)
class Fill:
    order_id: str
    side: str
    quantity: float
    price: float
    fee: float  # paid in the quote currency (out of cash)
    base_fee: float = 0.0  # paid in the base asset (out of the quantity received)

    @property
    def notional(self) -> float:
        return self.quantity * self.price


class Broker(Protocol):
    kind: str

    def min_quantity(self, price: float) -> float: ...

    def market_order(
        self, *, order_id: str, side: str, quantity: float, reference_price: float
    ) -> Fill: ...


FillPriceFn = Callable[[float, int, float], float]
FeeFn = Callable[[float, float], float]


def _backtest_costs() -> tuple[FillPriceFn, FeeFn]:
    # The backtester's own cost functions (engine.costs), without the backtest package.
    from engine import costs

    return costs.fill_price, costs.fee


class PaperBroker:
    kind = "paper"

    def __init__(
        self,
        *,
        fee_bps: float,
        slippage_bps: float,
        fill_price: FillPriceFn | None = None,
        fee: FeeFn | None = None,
    ) -> None:
        if fill_price is None or fee is None:
            default_fill_price, default_fee = _backtest_costs()
            fill_price = fill_price or default_fill_price
            fee = fee or default_fee
        self.fee_bps = fee_bps
        self.slippage_bps = slippage_bps
        self._fill_price = fill_price
        self._fee = fee

    def min_quantity(self, price: float) -> float:
        return 0.0

    def market_order(
        self, *, order_id: str, side: str, quantity: float, reference_price: float
    ) -> Fill:
        price = float(self._fill_price(reference_price, SIDE_SIGN[side], self.slippage_bps))
        fee = float(self._fee(quantity * price, self.fee_bps))
        return Fill(order_id=order_id, side=side, quantity=quantity, price=price, fee=fee)


@dataclass(frozen=True)
class SymbolFilters:
    symbol: str
    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal

    def round_quantity(self, quantity: float) -> Decimal:
        """Down to the LOT_SIZE step: never buy or sell more than decided."""
        steps = (Decimal(repr(quantity)) / self.step_size).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.step_size).normalize()


def parse_symbol_filters(exchange_info: dict[str, Any], symbol: str) -> SymbolFilters:
    entry = next((s for s in exchange_info.get("symbols", []) if s.get("symbol") == symbol), None)
    if entry is None:
        raise LiveStartError(f"exchangeInfo: symbol {symbol} not listed")
    if entry.get("status", "TRADING") != "TRADING":
        raise LiveStartError(f"exchangeInfo: {symbol} status is {entry.get('status')}")
    filters = {f.get("filterType"): f for f in entry.get("filters", [])}
    lot = filters.get("LOT_SIZE")
    if lot is None:
        raise LiveStartError(f"exchangeInfo: {symbol} has no LOT_SIZE filter")
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    try:
        return SymbolFilters(
            symbol=symbol,
            base_asset=entry["baseAsset"],
            quote_asset=entry["quoteAsset"],
            step_size=Decimal(lot["stepSize"]),
            min_qty=Decimal(lot["minQty"]),
            max_qty=Decimal(lot["maxQty"]),
            min_notional=Decimal(notional.get("minNotional", "0")),
        )
    except (KeyError, ArithmeticError) as exc:
        raise LiveStartError(f"exchangeInfo: {symbol} filters malformed ({exc!r})") from exc


def ensure_withdrawals_disabled(client: Any) -> None:
    """A trading key that can withdraw turns a leaked host into lost funds: refuse it."""
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    try:
        restrictions = client.get_account_api_permissions()
    except (BinanceAPIException, BinanceRequestException) as exc:
        raise LiveStartError(f"cannot read API key restrictions: {exc}") from exc
    if "enableWithdrawals" not in restrictions:
        raise LiveStartError("API key restrictions lack enableWithdrawals; refusing to trade")
    if restrictions["enableWithdrawals"]:
        raise LiveStartError(
            "API key allows withdrawals (apiRestrictions.enableWithdrawals=true); "
            "create a trade-only key"
        )


class LiveBroker:
    kind = "live"

    def __init__(self, client: Any, filters: SymbolFilters) -> None:
        self.client = client
        self.filters = filters

    def min_quantity(self, price: float) -> float:
        """The smallest quantity the exchange accepts at `price` (LOT_SIZE and notional)."""
        by_notional = float(self.filters.min_notional) / price if price > 0 else 0.0
        return max(float(self.filters.min_qty), float(self.filters.step_size), by_notional)

    def balances(self) -> tuple[float, float]:
        """(free quote, free base) from /api/v3/account."""
        account = self.client.get_account()
        free = {b["asset"]: float(b["free"]) for b in account.get("balances", [])}
        return free.get(self.filters.quote_asset, 0.0), free.get(self.filters.base_asset, 0.0)

    def market_order(
        self, *, order_id: str, side: str, quantity: float, reference_price: float
    ) -> Fill:
        from binance.exceptions import BinanceAPIException, BinanceRequestException

        qty = self.filters.round_quantity(quantity)
        if qty < self.filters.min_qty or qty <= 0:
            raise OrderRefused(
                f"quantity {quantity} rounds to {qty}, below LOT_SIZE minQty {self.filters.min_qty}"
            )
        qty = min(qty, self.filters.max_qty)
        notional = qty * Decimal(repr(reference_price))
        if notional < self.filters.min_notional:
            raise OrderRefused(
                f"notional {notional:.8f} below minimum {self.filters.min_notional} "
                f"for {self.filters.symbol}"
            )
        import requests  # with python-binance, only where an order goes out: not at start-up

        try:
            response = self.client.create_order(
                symbol=self.filters.symbol,
                side=side.upper(),
                type="MARKET",
                quantity=format(qty, "f"),
                newClientOrderId=order_id,
                newOrderRespType="FULL",
            )
        except (BinanceAPIException, BinanceRequestException) as exc:
            raise OrderRefused(f"exchange refused order {order_id}: {exc}") from exc
        except requests.RequestException as exc:
            raise OrderOutcomeUnknown(
                f"order {order_id}: no answer from the exchange ({exc})"
            ) from exc
        return _fill_from_response(order_id, side, response)


def _fill_from_response(order_id: str, side: str, response: dict[str, Any]) -> Fill:
    executed = float(response.get("executedQty", 0))
    if response.get("status") not in ("FILLED", "PARTIALLY_FILLED") or executed <= 0:
        raise OrderRefused(f"order {order_id} not filled: status={response.get('status')}")
    quote = float(response.get("cummulativeQuoteQty", 0))
    price = quote / executed
    symbol = str(response.get("symbol", ""))
    fee = base_fee = 0.0
    for fill in response.get("fills", []):
        commission = float(fill.get("commission", 0))
        asset = str(fill.get("commissionAsset", ""))
        # Binance takes the commission from the asset received (or in BNB when enabled).
        if asset and symbol.startswith(asset):
            base_fee += commission
        elif asset and symbol.endswith(asset):
            fee += commission
        elif commission:
            log.warning(
                "order %s: commission %s %s not accounted in equity", order_id, commission, asset
            )
    return Fill(
        order_id=order_id, side=side, quantity=executed, price=price, fee=fee, base_fee=base_fee
    )
