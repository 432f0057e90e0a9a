"""One concern: start-up, wiring and shutdown of the engine process (`python -m engine.live`).

Whole because the order is the safety: each check and each part (costs, clock, broker,
journal, feed) is wired in the one sequence below, and nothing trades before all passed.

Start-up order: risk limits, model checks (engine.inference), trading costs (the policy
costs file shipped with the model), then exactly one
`model loaded: <name> version=<v> sha256=<sha>` log line, then broker, journal and feed.
Nothing trades before every check has passed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.live.brokers import Broker, LiveBroker, LiveStartError, PaperBroker
from engine.live.candles import candles_from_frame
from engine.live.config import (
    ConfigError,
    EngineCosts,
    RiskLimits,
    load_risk_limits,
    resolve_costs,
)
from engine.live.feeds import (
    BINANCE_URL_ENV,
    BinanceKlineFeed,
    ExchangeClock,
    FeedItem,
    ReplayFeed,
    make_binance_client,
)
from engine.live.journal import (
    Journal,
    JournalError,
    archive_other_model,
    journal_path,
    rotate_if_large,
)
from engine.live.risk import RiskManager
from engine.live.runner import TradingEngine
from engine.live.sentiment import LiveSentiment
from engine.live.status import StatusReporter
from engine.live.strategy import StrategyError, build_strategy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("engine.live")

# Exit codes a supervisor (systemd, deployment's health check) can tell apart.
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_MODEL_CHECK = 3
EXIT_JOURNAL = 4
EXIT_LIVE_REFUSED = 5
EXIT_DATA = 6
EXIT_UNEXPECTED = 1

API_KEY_ENV = "BINANCE_API_KEY"
API_SECRET_ENV = "BINANCE_API_SECRET"  # noqa: S105 - the variable's name, not a secret


class StartError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class EngineOptions:
    strategy: str
    model_dir: Path
    journal_dir: Path
    status_file: Path | None
    model_name: str | None = None
    status_port: int | None = None
    live: bool = False
    testnet: bool = False
    symbol: str | None = None
    interval: str | None = None
    data_dir: Path | None = None
    candles_csv: Path | None = None
    sentiment_csv: Path | None = None
    replay: bool = False
    replay_from: pd.Timestamp | None = None
    replay_to: pd.Timestamp | None = None
    speed: float = 0.0
    initial_cash: float = 10_000.0
    # Explicit costs (--fee-bps/--slippage-bps); None: the model's policy costs file, else
    # the engine's defaults (engine_costs).
    fee_bps: float | None = None
    slippage_bps: float | None = None
    risk_config: Path | None = None
    reset_kill_switch: bool = False
    poll_seconds: float = 5.0
    # "system": the host's clock (production). "exchange": the exchange's server time, read
    # each poll round, so the engine follows an accelerated fake exchange in tests and demos.
    clock: str = "system"
    binance_url: str | None = None
    fng_url: str | None = None
    strategy_params: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "live" if self.live else "paper"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def load_predictor(model_dir: Path, name: str | None) -> Any:
    """The checked model, or StartError naming the failed start-up check."""
    from engine.inference import ModelCheckError, OnnxPredictor

    try:
        return OnnxPredictor.from_dir(model_dir, name)
    except ModelCheckError as exc:
        raise StartError(
            EXIT_MODEL_CHECK, f"start-up check {exc.check} failed: {exc.detail}"
        ) from exc


def check_model_fits(metadata: dict[str, Any], *, symbol: str | None, interval: str | None) -> str:
    """The engine-level check: the model was trained for the symbol and interval traded."""
    for key, wanted in (("symbol", symbol), ("interval", interval)):
        if wanted is not None and metadata.get(key) != wanted:
            raise StartError(
                EXIT_MODEL_CHECK,
                f"start-up check engine_fit failed: model {metadata.get('name')} is for "
                f"{key} {metadata.get(key)!r}, engine trades {wanted!r}",
            )
    return f"{metadata.get('symbol')} {metadata.get('interval')}"


def model_loaded_line(predictor: Any) -> str:
    """The one line deployment's health check looks for (docs/interfaces.md)."""
    return f"model loaded: {predictor.name} version={predictor.version} sha256={predictor.sha256}"


def _risk_limits(options: EngineOptions) -> RiskLimits:
    try:
        limits = load_risk_limits(options.risk_config)
    except ConfigError as exc:
        raise StartError(EXIT_CONFIG, f"risk configuration: {exc}") from exc
    if options.live and not limits.is_complete:
        raise StartError(
            EXIT_CONFIG,
            "live trading needs every risk limit set on the host (max_position_notional, "
            "max_daily_loss, max_orders_per_hour); see deployment/systemd/README.md",
        )
    return limits


def engine_costs(options: EngineOptions, name: str) -> EngineCosts:
    """The costs to trade at: the policy costs shipped with the model, explicit flags only
    at or above them (engine.live.config.resolve_costs)."""
    try:
        return resolve_costs(
            options.model_dir,
            name,
            fee_bps=options.fee_bps,
            slippage_bps=options.slippage_bps,
            default_fee_bps=DEFAULT_FEE_BPS,
            default_slippage_bps=DEFAULT_SLIPPAGE_BPS,
        )
    except ConfigError as exc:
        raise StartError(EXIT_CONFIG, f"trading costs: {exc}") from exc


def _live_broker(options: EngineOptions, symbol: str) -> tuple[LiveBroker, Any]:
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    from engine.live.brokers import ensure_withdrawals_disabled, parse_symbol_filters

    key, secret = os.environ.get(API_KEY_ENV), os.environ.get(API_SECRET_ENV)
    if not key or not secret:
        raise StartError(EXIT_LIVE_REFUSED, f"--live needs {API_KEY_ENV} and {API_SECRET_ENV}")
    client = make_binance_client(
        api_key=key, api_secret=secret, base_url=options.binance_url, testnet=options.testnet
    )
    try:
        if options.testnet and not (options.binance_url or os.environ.get(BINANCE_URL_ENV)):
            # The spot testnet has no /sapi: its keys cannot withdraw real funds anyway.
            log.info("testnet: API key restriction check skipped (no /sapi on the testnet)")
        else:
            ensure_withdrawals_disabled(client)
        filters = parse_symbol_filters(client.get_exchange_info(), symbol)
    except LiveStartError as exc:
        raise StartError(EXIT_LIVE_REFUSED, f"live trading refused: {exc}") from exc
    except (BinanceAPIException, BinanceRequestException, OSError) as exc:
        raise StartError(
            EXIT_LIVE_REFUSED, f"live trading refused: exchange error or unreachable: {exc}"
        ) from exc
    return LiveBroker(client, filters), client


def _replay_candles(
    options: EngineOptions, symbol: str, interval: str, warmup: int
) -> pd.DataFrame:
    """Candles for a replay: the [from, to) window plus `warmup` bars before it."""
    from engine.data.intervals import interval_timedelta

    step = interval_timedelta(interval)
    start = None if options.replay_from is None else options.replay_from - warmup * step
    try:
        if options.candles_csv is not None:
            from engine.data.csv_import import read_kline_csv

            frame = read_kline_csv(options.candles_csv, interval)
        elif options.data_dir is not None:
            from engine.data.store import read_candles

            frame = read_candles(
                options.data_dir, symbol, interval, start=start, end=options.replay_to
            ).frame
        else:
            raise StartError(EXIT_CONFIG, "--replay needs --data-dir or --candles-csv")
    except StartError:
        raise
    except Exception as exc:  # engine.data raises several types, each with a clear message
        raise StartError(EXIT_DATA, f"replay data: {exc}") from exc
    if start is not None:
        frame = frame[frame.index >= start]
    if options.replay_to is not None:
        frame = frame[frame.index < options.replay_to]
    if frame.empty:
        raise StartError(EXIT_DATA, "replay data: no candles in the requested window")
    return frame


def _sentiment(
    options: EngineOptions, needed: bool, clock: Callable[[], float] | None = None
) -> pd.Series | LiveSentiment | None:
    """The Fear & Greed series: from a file or the store, refreshed from the API when live.

    `clock` paces the refreshes (the exchange's clock when the engine lives on it)."""
    if not needed:
        return None
    if not options.replay:
        initial = _sentiment_file(options) if options.sentiment_csv or options.data_dir else None
        if clock is None:
            return LiveSentiment(initial, api_url=options.fng_url)
        return LiveSentiment(initial, api_url=options.fng_url, clock=clock)
    series = _sentiment_file(options)
    if series is None:
        raise StartError(
            EXIT_DATA,
            "the model uses sentiment: pass --sentiment-csv or --data-dir with the series",
        )
    return series


def _sentiment_file(options: EngineOptions) -> pd.Series | None:
    try:
        if options.sentiment_csv is not None:
            from engine.data.csv_import import read_sentiment_csv

            return read_sentiment_csv(options.sentiment_csv)
        if options.data_dir is not None:
            from engine.data.store import read_sentiment

            return read_sentiment(options.data_dir).frame
    except Exception as exc:  # engine.data raises several types, each with a clear message
        raise StartError(EXIT_DATA, f"sentiment data: {exc}") from exc
    return None


def _install_signal_handlers(stop_event: threading.Event) -> None:
    """Installed first thing, so a SIGTERM during start-up also ends in a clean exit 0."""

    def request_stop(signum: int, _frame: Any) -> None:
        log.info(
            "signal %s: finishing the current step, then stopping", signal.Signals(signum).name
        )
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def reset_kill_switch(journal_dir: Path, *, reason: str) -> list[Path]:
    """Unlatch the kill switch in every journal of the folder that has it latched."""
    reset: list[Path] = []
    for path in sorted(journal_dir.glob("*.jsonl")):
        journal = Journal(path)
        try:
            if journal.state.kill_switch:
                journal.append("kill_switch", latched=False, reason=reason)
                reset.append(path)
        finally:
            journal.close()
    return reset


def run_engine(options: EngineOptions) -> int:
    """The whole process: verify, trade until the feed ends or SIGTERM, save, exit code."""
    status = StatusReporter(options.status_file, mode=options.mode)
    try:
        return _run(options, status)
    except StartError as exc:
        log.error("%s", exc)
        _publish_quietly(status, state="failed", detail=str(exc))
        return exc.code
    except Exception as exc:
        # A bug or a broken install: say so in the log and the status, exit non-zero so that
        # systemd restarts the service, rather than die with the status still "running".
        log.exception("engine stopped by an unexpected error")
        _publish_quietly(status, state="failed", detail=f"unexpected error: {exc!r}")
        return EXIT_UNEXPECTED
    finally:
        status.close()


def _publish_quietly(status: StatusReporter, **fields: Any) -> None:
    try:
        status.publish(**fields)
    except OSError as exc:
        log.error("cannot write status file %s: %s", status.path, exc)


def _run(options: EngineOptions, status: StatusReporter) -> int:
    from engine.data.intervals import interval_step

    started = time.perf_counter()
    stop_event = threading.Event()
    _install_signal_handlers(stop_event)
    limits = _risk_limits(options)
    predictor = load_predictor(options.model_dir, options.model_name)
    metadata = predictor.metadata
    symbol = options.symbol or metadata["symbol"]
    interval = options.interval or metadata["interval"]
    check_model_fits(metadata, symbol=symbol, interval=interval)
    costs = engine_costs(options, predictor.name)
    log.info("trading costs: %s", costs.describe())
    try:
        strategy, strategy_predictor = build_strategy(
            options.strategy,
            model=predictor,
            fee_bps=costs.fee_bps,
            slippage_bps=costs.slippage_bps,
            **options.strategy_params,
        )
    except StrategyError as exc:
        raise StartError(EXIT_CONFIG, str(exc)) from exc
    if predictor.serving_backup:
        log.warning(
            "SERVING THE BACKUP MODEL: %s matches the kept previous metadata %s, not %s "
            "(the guide's manual rollback); deploy again to leave this state",
            predictor.onnx_path,
            predictor.metadata_path,
            predictor.onnx_path.with_name(f"{predictor.name}_metadata.json"),
        )
    log.info("%s", model_loaded_line(predictor))
    status.update(
        model_name=predictor.name,
        model_version=predictor.version,
        model_sha256=predictor.sha256,
        serving_backup=predictor.serving_backup,
        interval_seconds=interval_step(interval).total_seconds(),
        costs=costs.record(),
    )

    broker: Broker  # paper or live: the engine only needs the protocol
    if options.live:
        broker, client = _live_broker(options, symbol)
    else:
        broker, client = (
            PaperBroker(fee_bps=costs.fee_bps, slippage_bps=costs.slippage_bps),
            None,
        )

    if client is None and not options.replay:  # paper on the live market: klines only
        client = make_binance_client(base_url=options.binance_url, testnet=options.testnet)
    clock = _market_clock(options, client)

    path = journal_path(options.journal_dir, symbol=symbol, mode=options.mode)
    try:
        if not options.live:
            earlier = archive_other_model(path, predictor.sha256)
            if earlier is not None:
                log.info("paper journal of another model archived as %s; fresh cash", earlier.name)
        archive = rotate_if_large(path)
        if archive is not None:
            log.info("journal %s archived as %s; state carried over", path, archive.name)
        journal = Journal(path)
        if options.reset_kill_switch and journal.state.kill_switch:
            journal.append("kill_switch", latched=False, reason="--reset-kill-switch at start-up")
            log.warning("kill switch reset by --reset-kill-switch")
    except (JournalError, OSError) as exc:
        raise StartError(EXIT_JOURNAL, f"journal: {exc}") from exc

    history = int(predictor.required_history) + 1
    engine = TradingEngine(
        strategy=strategy,
        predictor=strategy_predictor,
        broker=broker,
        journal=journal,
        risk=RiskManager(limits, past_order_times=journal.state.order_candles),
        status=status,
        symbol=symbol,
        interval=interval_step(interval),
        history_size=history,
        initial_cash=options.initial_cash,
        sentiment=_sentiment(
            options, bool(metadata.get("uses_sentiment")), None if clock is time.time else clock
        ),
        execute_on_close=not options.replay,
        fee_bps=costs.fee_bps,
        slippage_bps=costs.slippage_bps,
        stop_event=stop_event,
    )
    if isinstance(broker, LiveBroker):
        try:
            engine.sync_balances(*broker.balances())
        except Exception as exc:  # python-binance and requests raise many types
            raise StartError(EXIT_LIVE_REFUSED, f"live trading refused: account: {exc}") from exc
    if options.status_port is not None:
        port = status.serve(options.status_port)
        log.info("status served on http://127.0.0.1:%d/status", port)

    journal.append(
        "session_start",
        mode=options.mode,
        model_name=predictor.name,
        model_version=predictor.version,
        model_sha256=predictor.sha256,
        pid=os.getpid(),
        # Where this session's orders fill: at the decision bar's close on a live feed, at
        # the next bar's open in a replay (what a comparison with a backtest must know).
        fills_at="next_open" if options.replay else "close",
        costs=costs.record(),
        # Whose "now" this session lived on: a run on an accelerated exchange says so.
        clock="replay" if options.replay else options.clock,
    )
    if engine.resumed():
        log.info(
            "resumed from journal %s: position %.8f, last candle %s, kill switch %s",
            path, engine.quantity, engine.last_candle, "latched" if engine.kill_switch else "off",
        )  # fmt: skip
    engine.publish_status()
    log.info(
        "ready in %.3fs (%s mode, %s %s)",
        time.perf_counter() - started,
        options.mode,
        symbol,
        interval,
    )

    feed = _feed(options, engine, client, symbol, interval, history, clock)
    try:
        engine.run(feed)
    finally:
        reason = "signal" if engine.stop_event.is_set() else "feed ended"
        journal.append("session_stop", reason=reason)
        journal.close()
        _publish_quietly(
            status,
            state="stopped",
            last_candle=engine.last_candle.isoformat() if engine.last_candle is not None else None,
            position=engine.quantity,
            equity=engine.last_equity,
            kill_switch=engine.kill_switch,
        )
    log.info("stopped (%s): position %.8f, equity %s", reason, engine.quantity, engine.last_equity)
    return EXIT_OK


def _feed(
    options: EngineOptions,
    engine: TradingEngine,
    client: Any,
    symbol: str,
    interval: str,
    history: int,
    clock: Callable[[], float] = time.time,
) -> Any:
    if options.replay:
        frame = _replay_candles(options, symbol, interval, warmup=history)
        return ReplayFeed(
            candles_from_frame(frame),
            interval=engine.interval,
            speed=options.speed,
            stop_event=engine.stop_event,
            trade_from=options.replay_from,
        )
    if client is None:  # paper trading on the live market: klines only, never orders
        client = make_binance_client(base_url=options.binance_url, testnet=options.testnet)
    return BinanceKlineFeed(
        client,
        symbol=symbol,
        interval=interval,
        interval_delta=engine.interval,
        last_processed=engine.last_candle,
        history=history,
        stop_event=engine.stop_event,
        poll_seconds=options.poll_seconds,
        clock=clock,
        rewarm=True,  # a restarted engine decides its next bar on the full history
    )


def _market_clock(options: EngineOptions, client: Any) -> Callable[[], float]:
    """What "now" is for the live feed: the host's clock, or the exchange's server time."""
    if options.clock == "system" or options.replay:
        return time.time
    if options.clock == "exchange":
        return ExchangeClock(client)
    raise StartError(EXIT_CONFIG, f"unknown clock {options.clock!r}: system or exchange")


__all__ = [
    "EngineOptions",
    "FeedItem",
    "check_model_fits",
    "configure_logging",
    "model_loaded_line",
    "reset_kill_switch",
    "run_engine",
]
