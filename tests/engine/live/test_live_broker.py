"""The live broker's order path against the fake Binance server (python-binance pointed at it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from engine.live.brokers import (
    BUY,
    LiveBroker,
    LiveStartError,
    OrderRefused,
    ensure_withdrawals_disabled,
    parse_symbol_filters,
)
from engine.live.candles import candles_from_frame
from engine.live.feeds import make_binance_client
from tests.engine.live.conftest import run_engine
from tests.engine.live.helpers import paper_engine
from tests.fakes.binance_server import DEFAULT_NOW_MS, FakeBinanceServer
from tests.fakes.binance_trading import FakeAccount, install_trading_routes

ORDER_PATH = "/api/v3/order"


@pytest.fixture
def account() -> FakeAccount:
    return FakeAccount()


@pytest.fixture
def exchange(account: FakeAccount) -> Iterator[FakeBinanceServer]:
    server = FakeBinanceServer()
    server.market.add_symbol("BTCUSDT", listed_at_ms=DEFAULT_NOW_MS - 1000 * 3_600_000)
    install_trading_routes(server, account)
    with server:
        yield server


@pytest.fixture
def broker(exchange: FakeBinanceServer, account: FakeAccount) -> LiveBroker:
    client = make_binance_client(
        api_key=account.api_key, api_secret=account.api_secret, base_url=exchange.url
    )
    return LiveBroker(client, parse_symbol_filters(client.get_exchange_info(), "BTCUSDT"))


def test_quantity_is_rounded_down_to_the_lot_step(broker, exchange, account) -> None:
    fill = broker.market_order(order_id="t-1", side=BUY, quantity=0.0123456789, reference_price=3e4)
    sent = exchange.requests_to(ORDER_PATH)[0].form()
    assert sent["quantity"] == "0.01234"
    assert (sent["type"], sent["side"], sent["newClientOrderId"]) == ("MARKET", "BUY", "t-1")
    assert fill.quantity == pytest.approx(0.01234)
    assert fill.price == pytest.approx(float(account.orders[0]["fills"][0]["price"]))
    assert (fill.fee, fill.base_fee) == (0.0, pytest.approx(0.01234 * 0.001))  # paid in BTC
    assert account.balances["BTC"] == Decimal("0.01234") * (1 - Decimal("0.001"))
    assert broker.balances() == (
        pytest.approx(float(account.balances["USDT"])),
        pytest.approx(0.01232766),
    )


def test_below_min_notional_is_refused_before_anything_is_sent(broker, exchange) -> None:
    with pytest.raises(OrderRefused, match="below minimum 5"):
        broker.market_order(order_id="t-2", side=BUY, quantity=0.0001, reference_price=3e4)
    with pytest.raises(OrderRefused, match="below LOT_SIZE minQty"):
        broker.market_order(order_id="t-3", side=BUY, quantity=0.000001, reference_price=3e4)
    assert exchange.requests_to(ORDER_PATH) == []


def test_exchange_refusal_leaves_journal_and_position_consistent(
    broker, exchange, account, all_candles, tmp_path: Path, caplog
) -> None:
    account.refuse_next = (-2010, "Account has insufficient balance for requested action.")
    engine = paper_engine(tmp_path, broker=broker)
    bars = candles_from_frame(all_candles.loc["2024-03-01":"2024-03-01 02:00"])
    engine.on_candle(bars[0])
    engine.on_candle(bars[1])  # the buy decided at bar 0 goes out at bar 1's open: refused
    assert engine.quantity == 0.0
    assert "code=-2010" in caplog.text and "insufficient balance" in caplog.text
    records = [json.loads(x) for x in (tmp_path / "btcusdt-paper.jsonl").read_text().splitlines()]
    order = next(r for r in records if r["type"] == "order")
    refusal = next(r for r in records if r["type"] == "order_rejected")
    assert refusal["order_id"] == order["order_id"] and "-2010" in refusal["reason"]
    assert not [r for r in records if r["type"] == "fill"]
    assert json.loads((tmp_path / "status.json").read_text())["position"] == 0.0

    engine.on_candle(bars[2])  # the target still stands: the next bar retries and fills
    assert engine.quantity > 0
    assert len(account.orders) == 1
    assert engine.journal.state.unsettled_orders == []


def test_a_key_that_can_withdraw_is_refused(broker, account) -> None:
    ensure_withdrawals_disabled(broker.client)  # a trade-only key passes
    account.enable_withdrawals = True
    with pytest.raises(LiveStartError, match="allows withdrawals"):
        ensure_withdrawals_disabled(broker.client)


def _live_args(model_dir: Path, tmp_path: Path, shared_data_dir: Path) -> list[str | Path]:
    return [
        "buy_and_hold", "--live", "--model-dir", model_dir,
        "--status-file", tmp_path / "status.json", "--journal-dir", tmp_path / "journal",
        "--sentiment-csv", shared_data_dir / "fear_greed_index.csv", "--poll-seconds", "0.2",
    ]  # fmt: skip


RISK_ENV = {
    "TRADEBOT_MAX_POSITION_NOTIONAL": "1000",
    "TRADEBOT_MAX_DAILY_LOSS": "100",
    "TRADEBOT_MAX_ORDERS_PER_HOUR": "4",
}


def test_live_start_is_refused_for_a_withdrawal_key(
    model_dir, exchange, account, tmp_path, shared_data_dir
) -> None:
    account.enable_withdrawals = True
    env = {"BINANCE_API_KEY": account.api_key, "BINANCE_API_SECRET": account.api_secret}
    result = run_engine(
        tmp_path, *_live_args(model_dir, tmp_path, shared_data_dir),
        TRADEBOT_BINANCE_API_URL=exchange.url, **env, **RISK_ENV,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "live trading refused: API key allows withdrawals" in result.stderr
    assert exchange.requests_to(ORDER_PATH) == []
    assert not (tmp_path / "journal").exists()


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        (RISK_ENV, 5, "--live needs BINANCE_API_KEY and BINANCE_API_SECRET"),
        ({"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}, 2, "needs every risk limit"),
    ],
    ids=["no-keys", "no-risk-limits"],
)
def test_live_start_needs_keys_and_limits(model_dir, tmp_path, shared_data_dir, env, code, message):
    result = run_engine(tmp_path, *_live_args(model_dir, tmp_path, shared_data_dir), **env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr


@pytest.mark.slow
def test_live_engine_places_a_rounded_market_order(
    model_dir, account, tmp_path, shared_data_dir
) -> None:
    import signal
    import subprocess

    from tests.engine.live.conftest import PROJECT_ROOT, engine_command, engine_env

    now_ms = int(time.time() * 1000)
    server = FakeBinanceServer(now_ms=now_ms)
    server.market.add_symbol("BTCUSDT", listed_at_ms=now_ms - 500 * 3_600_000)
    install_trading_routes(server, account)
    env = {"BINANCE_API_KEY": account.api_key, "BINANCE_API_SECRET": account.api_secret}
    with server:
        process = subprocess.Popen(
            engine_command(*_live_args(model_dir, tmp_path, shared_data_dir)),
            cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True,
            env=engine_env(tmp_path, TRADEBOT_BINANCE_API_URL=server.url, **env, **RISK_ENV),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not account.orders and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, log
    assert len(account.orders) == 1, log
    quantity = Decimal(account.orders[0]["origQty"])
    assert quantity % Decimal("0.00001") == 0
    records = [
        json.loads(x)
        for x in (tmp_path / "journal" / "btcusdt-live.jsonl").read_text().splitlines()
    ]
    # max_position_notional=1000 caps the buy although the account holds 10,000 USDT. The cap
    # is applied at the price the engine decided on (the last close); the fake exchange fills
    # at its price of the moment, which may have moved since that close.
    reference = Decimal(str(next(r for r in records if r["type"] == "order")["reference_price"]))
    assert Decimal("990") <= quantity * reference <= Decimal("1000")
    assert [r["type"] for r in records if r["type"] in ("order", "fill")] == ["order", "fill"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["mode"] == "live" and status["position"] == pytest.approx(
        float(account.balances["BTC"])
    )
    assert pd.Timestamp(status["last_candle"]) == pd.Timestamp(
        now_ms // 3_600_000 * 3_600_000 - 3_600_000, unit="ms", tz="UTC"
    )


@pytest.mark.slow
def test_paper_mode_on_the_live_feed_never_reaches_an_order_endpoint(
    model_dir, account, tmp_path, shared_data_dir
) -> None:
    import signal
    import subprocess

    from tests.engine.live.conftest import PROJECT_ROOT, engine_command, engine_env

    now_ms = int(time.time() * 1000)
    server = FakeBinanceServer(now_ms=now_ms)
    server.market.add_symbol("BTCUSDT", listed_at_ms=now_ms - 500 * 3_600_000)
    install_trading_routes(server, account)
    args = _live_args(model_dir, tmp_path, shared_data_dir)
    args[args.index("--live")] = "--paper-trading"
    journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
    with server:
        process = subprocess.Popen(
            engine_command(*args), cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True,
            env=engine_env(tmp_path, TRADEBOT_BINANCE_API_URL=server.url),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                if journal.exists() and '"type":"fill"' in journal.read_text():
                    break
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        paths = {r.path for r in server.requests}
    assert process.returncode == 0, log
    assert '"type":"fill"' in journal.read_text(), log
    assert "/api/v3/klines" in paths
    assert not paths & {ORDER_PATH, "/api/v3/account", "/sapi/v1/account/apiRestrictions"}
    assert account.orders == []


def test_an_unanswered_order_is_resolved_from_the_exchange_balances(
    exchange, account, all_candles, tmp_path: Path, caplog
) -> None:
    client = make_binance_client(
        api_key=account.api_key, api_secret=account.api_secret, base_url=exchange.url, timeout=0.3
    )
    broker = LiveBroker(client, parse_symbol_filters(client.get_exchange_info(), "BTCUSDT"))
    engine = paper_engine(tmp_path, broker=broker)
    account.answer_delay = 1.0  # booked at once, answered after the client gave up
    bars = candles_from_frame(all_candles.loc["2024-03-01":"2024-03-01 01:00"])
    engine.on_candle(bars[0])
    engine.on_candle(bars[1])
    assert len(account.orders) == 1, "the order executed on the exchange"
    assert engine.quantity == pytest.approx(float(account.balances["BTC"]))
    assert engine.cash == pytest.approx(float(account.balances["USDT"]))
    records = [json.loads(x) for x in (tmp_path / "btcusdt-paper.jsonl").read_text().splitlines()]
    unknown = next(r for r in records if r["type"] == "order_unknown")
    assert "no answer from the exchange" in unknown["reason"] and "re-read" in unknown["reason"]
    assert engine.journal.state.unsettled_orders == []
    assert "re-reading balances" in caplog.text
