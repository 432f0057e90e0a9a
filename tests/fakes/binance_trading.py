"""Binance's signed trading endpoints for the fake server in tests/fakes/binance_server.py.

Installed on a FakeBinanceServer with ``install_trading_routes(server, account)``:

* ``POST /api/v3/order``: MARKET orders, checked as Binance checks them (API key header,
  HMAC-SHA256 signature, LOT_SIZE step and minQty, MIN_NOTIONAL/NOTIONAL, balance), filled
  at the symbol's current price with a 0.1% commission, FULL response;
* ``GET /api/v3/account``: balances;
* ``GET /sapi/v1/account/apiRestrictions``: the key's permissions (``enableWithdrawals``).

``account.refuse_next`` makes the next order fail with a given Binance error, as the
exchange may refuse an order for reasons the client cannot foresee; ``account.answer_delay``
books the order but answers late, so a client timeout leaves its outcome unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

import numpy as np

from tests.fakes.binance_server import FakeBinanceServer, binance_error
from tests.fakes.http_fake import FakeRequest, FakeResponse

COMMISSION_RATE = Decimal("0.001")
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


@dataclass
class FakeAccount:
    api_key: str = "test-key"
    api_secret: str = "test-secret"
    balances: dict[str, Decimal] = field(
        default_factory=lambda: {"USDT": Decimal("10000"), "BTC": Decimal("0")}
    )
    enable_withdrawals: bool = False
    refuse_next: tuple[int, str] | None = None
    # Seconds to hold the answer after the order is booked: a client timeout then leaves
    # an order that executed although the client never heard so.
    answer_delay: float = 0.0
    orders: list[dict[str, object]] = field(default_factory=list)


def _signed_params(request: FakeRequest, account: FakeAccount) -> dict[str, str] | FakeResponse:
    """The request's parameters if its key and signature are valid, else Binance's error."""
    if request.headers.get("X-MBX-APIKEY") != account.api_key:
        return binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    pairs = list(request.query.items())
    if request.body:
        pairs += [tuple(p.split("=", 1)) for p in request.body.decode().split("&") if "=" in p]
    params = dict(pairs)
    signature = params.pop("signature", None)
    payload = "&".join(
        f"{k}={quote(v) if k == 'symbol' else v}" for k, v in pairs if k != "signature"
    )
    expected = hmac.new(account.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if signature is None or not hmac.compare_digest(signature, expected):
        return binance_error(-1022, "Signature for this request is not valid.")
    return params


def install_trading_routes(server: FakeBinanceServer, account: FakeAccount) -> None:
    ids = itertools.count(1)

    def current_price(symbol: str) -> Decimal:
        entry = server.market.symbols[symbol]
        price = server.market.price(entry, np.array([server.now_ms], dtype=np.float64))[0]
        return Decimal(f"{price:.2f}")

    @server.route("POST", "/api/v3/order")
    def new_order(request: FakeRequest) -> FakeResponse:
        params = _signed_params(request, account)
        if isinstance(params, FakeResponse):
            return params
        entry = server.market.symbols.get(params.get("symbol", ""))
        if entry is None:
            return binance_error(-1121, "Invalid symbol.")
        if params.get("type") != "MARKET" or params.get("side") not in ("BUY", "SELL"):
            return binance_error(-1116, "Invalid orderType.")
        if account.refuse_next is not None:
            code, msg = account.refuse_next
            account.refuse_next = None
            return binance_error(code, msg)
        try:
            quantity = Decimal(params["quantity"])
        except (KeyError, ArithmeticError):
            return binance_error(-1102, "Mandatory parameter 'quantity' was not sent.")
        step, min_qty = Decimal(entry.step_size), Decimal(entry.min_qty)
        if quantity < min_qty or quantity % step != 0:
            return binance_error(-1013, "Filter failure: LOT_SIZE")
        price = current_price(entry.symbol)
        notional = quantity * price
        if notional < Decimal(entry.min_notional):
            return binance_error(-1013, "Filter failure: NOTIONAL")
        base, quote_asset = entry.base_asset, entry.quote_asset
        balances = account.balances
        if params["side"] == "BUY":
            if balances.get(quote_asset, Decimal(0)) < notional:
                return binance_error(-2010, INSUFFICIENT_BALANCE)
            commission, commission_asset = quantity * COMMISSION_RATE, base
            balances[quote_asset] -= notional
            balances[base] = balances.get(base, Decimal(0)) + quantity - commission
        else:
            if balances.get(base, Decimal(0)) < quantity:
                return binance_error(-2010, INSUFFICIENT_BALANCE)
            commission, commission_asset = notional * COMMISSION_RATE, quote_asset
            balances[base] -= quantity
            balances[quote_asset] = balances.get(quote_asset, Decimal(0)) + notional - commission
        order = {
            "symbol": entry.symbol,
            "orderId": next(ids),
            "orderListId": -1,
            "clientOrderId": params.get("newClientOrderId", ""),
            "transactTime": server.now_ms,
            "price": "0.00000000",
            "origQty": format(quantity, "f"),
            "executedQty": format(quantity, "f"),
            "cummulativeQuoteQty": format(notional, "f"),
            "status": "FILLED",
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": params["side"],
            "fills": [
                {
                    "price": format(price, "f"),
                    "qty": format(quantity, "f"),
                    "commission": format(commission, "f"),
                    "commissionAsset": commission_asset,
                    "tradeId": len(account.orders) + 1,
                }
            ],
        }
        account.orders.append(order)
        if account.answer_delay:
            time.sleep(account.answer_delay)
        return FakeResponse.json(order)

    @server.route("GET", "/api/v3/account")
    def get_account(request: FakeRequest) -> FakeResponse:
        params = _signed_params(request, account)
        if isinstance(params, FakeResponse):
            return params
        return FakeResponse.json(
            {
                "canTrade": True,
                "canWithdraw": account.enable_withdrawals,
                "canDeposit": True,
                "accountType": "SPOT",
                "balances": [
                    {"asset": a, "free": format(v, "f"), "locked": "0.00000000"}
                    for a, v in account.balances.items()
                ],
                "permissions": ["SPOT"],
            }
        )

    @server.route("GET", "/sapi/v1/account/apiRestrictions")
    def api_restrictions(request: FakeRequest) -> FakeResponse:
        params = _signed_params(request, account)
        if isinstance(params, FakeResponse):
            return params
        return FakeResponse.json(
            {
                "ipRestrict": False,
                "createTime": 1_623_840_271_000,
                "enableReading": True,
                "enableSpotAndMarginTrading": True,
                "enableWithdrawals": account.enable_withdrawals,
                "enableInternalTransfer": False,
                "enableMargin": False,
                "enableFutures": False,
                "permitsUniversalTransfer": False,
                "enableVanillaOptions": False,
            }
        )

    server.weights.update(
        {"/api/v3/order": 1, "/api/v3/account": 20, "/sapi/v1/account/apiRestrictions": 1}
    )
