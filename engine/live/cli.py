"""Command line of the engine: `python -m engine.live ml_basic --paper-trading ...`.

Also `python -m engine.live reset-kill-switch [--journal-dir DIR] --reason TEXT`, the only
way (with the --reset-kill-switch start-up flag) to unlatch the kill switch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.dates import DateError, check_window, parse_utc
from engine.live import app
from engine.live.config import (
    COSTS_SUFFIX,
    default_journal_dir,
    default_model_dir,
    default_status_file,
)
from engine.live.feeds import CLOCK_CHOICES
from engine.live.journal import JournalError, read_journal
from engine.strategies import STRATEGIES, strategy_spec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("engine.live")


def _utc_time(text: str) -> pd.Timestamp:
    """ISO 8601 only (engine.dates): ``12/03/2025`` is an error, not a guess."""
    import pandas as pd  # replay only: the live path runs without pandas

    try:
        return pd.Timestamp(parse_utc(text))
    except DateError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("date ")) from exc


def _positive_seconds(text: str) -> float:
    """A period in seconds: a finite number above 0 (0.02 is fine for accelerated runs)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds above 0")
    return value


def _unknown_strategy(name: str) -> str:
    try:
        strategy_spec(name)
    except ValueError as exc:  # UnknownStrategyError names the known ones
        return str(exc)
    return f"unknown strategy {name!r}"


class _OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line naming the problem, not the whole option list."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m engine.live",
        description="Run a model against candles: paper trading (default) or live with --live.",
    )
    parser.add_argument("strategy", help="strategy name, e.g. ml_basic or buy_and_hold")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--paper-trading", action="store_true", help="paper broker (the default)")
    mode.add_argument("--live", action="store_true", help="real orders (needs API keys in env)")
    parser.add_argument("--testnet", action="store_true", help="use Binance's spot testnet")
    parser.add_argument("--model-dir", type=Path, default=None, help="default <root>/src/ml")
    parser.add_argument("--model", dest="model_name", default=None, help="e.g. btcusdt_sentiment")
    parser.add_argument(
        "--status-file", type=Path, default=None, help="default <root>/var/status.json"
    )
    parser.add_argument("--status-port", type=int, default=None, help="serve status on 127.0.0.1")
    parser.add_argument("--journal-dir", type=Path, default=None, help="default <root>/var/journal")
    parser.add_argument("--data-dir", type=Path, default=None, help="the candle/sentiment store")
    parser.add_argument("--candles-csv", type=Path, default=None, help="replay from a CSV file")
    parser.add_argument("--sentiment-csv", type=Path, default=None, help="Fear & Greed CSV")
    parser.add_argument("--symbol", default=None, help="default: the model's symbol")
    parser.add_argument("--interval", default=None, help="default: the model's interval")
    parser.add_argument("--check-only", action="store_true", help="run start-up checks, exit 0/1")
    parser.add_argument("--json", action="store_true", help="with --check-only: JSON report")
    parser.add_argument("--replay", action="store_true", help="replay stored candles")
    parser.add_argument("--from", dest="replay_from", type=_utc_time, default=None)
    parser.add_argument("--to", dest="replay_to", type=_utc_time, default=None)
    parser.add_argument("--speed", type=float, default=0.0, help="replay time multiplier; 0 = max")
    parser.add_argument("--initial-cash", type=float, default=10_000.0, help="paper cash (USDT)")
    parser.add_argument(
        "--fee-bps",
        type=float,
        default=None,
        help=f"default: the model's <name>{COSTS_SUFFIX} (policy costs; lower is refused), "
        f"else {DEFAULT_FEE_BPS:g}",
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=None,
        help=f"default: the model's <name>{COSTS_SUFFIX}, else {DEFAULT_SLIPPAGE_BPS:g}",
    )
    parser.add_argument("--risk-config", type=Path, default=None, help="JSON or INI risk limits")
    parser.add_argument("--reset-kill-switch", action="store_true", help="unlatch, then start")
    parser.add_argument(
        "--poll-seconds", type=_positive_seconds, default=5.0, help="live klines poll period"
    )
    parser.add_argument(
        "--clock",
        choices=CLOCK_CHOICES,
        default="system",
        help="what 'now' is on the live feed: this host's clock (default, production) or the "
        "exchange's server time read each poll (an accelerated fake exchange in tests)",
    )
    parser.add_argument("--binance-url", default=None, help="API base URL (tests, proxies)")
    parser.add_argument("--fng-url", default=None, help="Fear & Greed API base URL")
    parser.add_argument("--threshold", type=float, default=None, help="ml_basic threshold")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def options_from_args(args: argparse.Namespace) -> app.EngineOptions:
    params: dict[str, Any] = {}
    if args.threshold is not None:
        params["threshold"] = args.threshold
    return app.EngineOptions(
        strategy=args.strategy,
        model_dir=args.model_dir or default_model_dir(),
        model_name=args.model_name,
        journal_dir=args.journal_dir or default_journal_dir(),
        status_file=args.status_file or default_status_file(),
        status_port=args.status_port,
        live=args.live,
        testnet=args.testnet,
        symbol=args.symbol,
        interval=args.interval,
        data_dir=args.data_dir,
        candles_csv=args.candles_csv,
        sentiment_csv=args.sentiment_csv,
        replay=args.replay,
        replay_from=args.replay_from,
        replay_to=args.replay_to,
        speed=args.speed,
        initial_cash=args.initial_cash,
        fee_bps=args.fee_bps,
        slippage_bps=args.slippage_bps,
        risk_config=args.risk_config,
        reset_kill_switch=args.reset_kill_switch,
        poll_seconds=args.poll_seconds,
        clock=args.clock,
        binance_url=args.binance_url,
        fng_url=args.fng_url,
        strategy_params=params,
    )


def check_report(options: app.EngineOptions) -> dict[str, Any]:
    """The guide's troubleshooting step: model files, metadata, loading, plus host config."""
    from engine.inference import check_model_dir

    checks = [
        {"name": r.name, "ok": r.ok, "detail": r.detail}
        for r in check_model_dir(options.model_dir, options.model_name)
    ]
    if all(c["ok"] for c in checks):
        checks.append(_engine_fit_check(options))
        checks.append(_costs_check(options))
    checks.append(_risk_check(options))
    checks.append(_journal_check(options))
    return {
        "model_dir": str(options.model_dir),
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


def _engine_fit_check(options: app.EngineOptions) -> dict[str, Any]:
    from engine.inference import OnnxPredictor

    metadata = OnnxPredictor.from_dir(options.model_dir, options.model_name).metadata
    try:
        detail = app.check_model_fits(metadata, symbol=options.symbol, interval=options.interval)
    except app.StartError as exc:
        return {"name": "engine_fit", "ok": False, "detail": str(exc)}
    return {"name": "engine_fit", "ok": True, "detail": detail}


def _costs_check(options: app.EngineOptions) -> dict[str, Any]:
    """The costs the engine would trade at, and their source (the policy costs file)."""
    from engine.inference import OnnxPredictor
    from engine.inference.artifacts import model_names_in

    # The model checks passed: the folder holds the model (one, unless --model names it).
    found = model_names_in(options.model_dir)
    name = options.model_name or (
        found[0]
        if len(found) == 1
        else OnnxPredictor.from_dir(options.model_dir, options.model_name).name
    )
    try:
        costs = app.engine_costs(options, name)
    except app.StartError as exc:
        return {"name": "costs", "ok": False, "detail": str(exc)}
    return {"name": "costs", "ok": True, "detail": costs.describe(), "costs": costs.record()}


def _risk_check(options: app.EngineOptions) -> dict[str, Any]:
    try:
        limits = app._risk_limits(options)
    except app.StartError as exc:
        return {"name": "risk_limits", "ok": False, "detail": str(exc)}
    return {"name": "risk_limits", "ok": True, "detail": repr(limits)}


def _journal_check(options: app.EngineOptions) -> dict[str, Any]:
    paths = sorted(options.journal_dir.glob("*.jsonl")) if options.journal_dir.is_dir() else []
    details = []
    for path in paths:
        try:
            records, state = read_journal(path)
        except JournalError as exc:
            return {"name": "journal", "ok": False, "detail": str(exc)}
        latched = " KILL SWITCH LATCHED" if state.kill_switch else ""
        details.append(f"{path.name}: {len(records)} records, position {state.quantity}{latched}")
    return {"name": "journal", "ok": True, "detail": "; ".join(details) or "no journal yet"}


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"model dir: {report['model_dir']}")
    for check in report["checks"]:
        print(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
    print("all checks passed" if report["ok"] else "checks FAILED")


def reset_kill_switch_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.live reset-kill-switch",
        description="Unlatch the kill switch recorded in the engine's journals.",
    )
    parser.add_argument("--journal-dir", type=Path, default=None, help="default <root>/var/journal")
    parser.add_argument("--reason", required=True, help="why it is safe to trade again (journaled)")
    args = parser.parse_args(argv)
    journal_dir = args.journal_dir or default_journal_dir()
    try:
        reset = app.reset_kill_switch(journal_dir, reason=args.reason)
    except JournalError as exc:
        log.error("%s", exc)
        return app.EXIT_JOURNAL
    if not reset:
        log.info("kill switch not latched in any journal of %s", journal_dir)
    for path in reset:
        log.warning("kill switch reset in %s: %s", path, args.reason)
    return app.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    app.configure_logging(logging.DEBUG if verbose else logging.INFO)
    if argv and argv[0] == "reset-kill-switch":
        return reset_kill_switch_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.strategy not in STRATEGIES:  # refused in every mode, --check-only included
        parser.error(_unknown_strategy(args.strategy))
    try:
        check_window(args.replay_from, args.replay_to, start_option="--from", end_option="--to")
    except DateError as exc:
        parser.error(str(exc))
    if args.clock == "exchange" and args.replay:
        parser.error("--clock exchange follows a live exchange; a --replay has no exchange")
    options = options_from_args(args)
    if args.check_only:
        report = check_report(options)
        _print_report(report, args.json)
        return 0 if report["ok"] else 1
    return app.run_engine(options)
