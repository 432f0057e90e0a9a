"""Live against backtest: the engine's journals from each production target, fetched by
``deployment.journals``, compared trade by trade with a backtest over the same bars."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings

from deployment.journals import journals_fetch
from engine.backtest import BacktestError, run_backtest
from engine.backtest.report import json_safe
from engine.data import DataError, StoreEmptyError, read_candles, read_sentiment
from engine.data.intervals import interval_ms
from engine.live.journal import JournalError, read_journal
from engine.live.paper import FILL_COLUMNS, round_trips
from models_registry.models import DeploymentTarget, Environment, ModelVersion
from models_registry.policy import CostPolicy, cost_policy_for
from models_registry.services.deployments import live_version_on_target, target_spec
from models_registry.services.model_versions import version_dir
from models_registry.services.monitoring.window import _utc

# The strategy production runs: scheduled runs and the live comparison backtest it.
STRATEGY = "ml_basic"
# Trade times are bar open times; prices are compared relative to the backtest's.
PRICE_EPSILON = 1e-12


def collect_journal(target: DeploymentTarget) -> list[dict[str, Any]]:
    """The engine's journals from every host of ``target``, read through the deploy connection.

    One dict per journal file: ``target``, ``host``, ``file``, ``records`` (validated by
    ``engine.live.journal.read_journal``) or ``error`` when the host or the file could not
    be read; an unreachable host is reported, not raised, so one host does not hide others.
    The hosts are reached by ``deployment.journals.journals_fetch``.
    """
    spec = target_spec(target)
    journals: list[dict[str, Any]] = []
    scratch = Path(tempfile.mkdtemp(prefix="journal-"))
    try:
        for fetched in journals_fetch(spec, scratch):
            where = {"target": target.name, "host": fetched.host, "file": fetched.file}
            if fetched.local is None:
                journals.append({**where, "error": fetched.error})
                continue
            try:
                records, _ = read_journal(fetched.local)
            except JournalError as exc:
                journals.append({**where, "error": str(exc)})
                continue
            journals.append({**where, "records": records})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return journals


def version_records(version: ModelVersion, records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The records of the sessions this exact file (sha256) ran; another model's are not its."""
    kept: list[dict[str, Any]] = []
    running: str | None = None
    for record in records:
        if record.get("type") == "session_start":
            running = record.get("model_sha256")
        if running == version.onnx_sha256:
            kept.append(dict(record))
    return kept


def session_costs_differences(records: Iterable[Mapping[str, Any]], costs: CostPolicy) -> list[str]:
    """Each session whose engine says (journal ``session_start``, engine/live/config.py) it
    traded at other costs than ``costs``, or did not say: a divergence then has a cause
    that is not the model."""
    found = []
    for record in records:
        if record.get("type") != "session_start":
            continue
        said = record.get("costs")
        where = f"session started {record.get('at')}"
        if not isinstance(said, Mapping):
            found.append(f"{where}: the engine did not record its costs")
            continue
        for name in ("fee_bps", "slippage_bps"):
            if said.get(name) != getattr(costs, name):
                found.append(
                    f"{where}: {name} {said.get(name)!r}, the policy's is {getattr(costs, name):g}"
                )
    return found


def _live_fills(records: list[dict[str, Any]], interval: pd.Timedelta) -> pd.DataFrame:
    """The journal's fills, each at the bar whose open the backtester would fill it at.

    On a live feed an order fills as its decision bar closes (the session says
    ``fills_at: close``), which is the next bar's open: the same trade as the backtest's."""
    rows = []
    shift = pd.Timedelta(0)
    for r in records:
        if r.get("type") == "session_start":
            shift = interval if r.get("fills_at") == "close" else pd.Timedelta(0)
        elif r.get("type") == "fill":
            rows.append(
                (_utc(r["candle"]) + shift, r["side"], float(r["quantity"]), float(r["price"]),
                 float(r["fee"]), "signal")
            )  # fmt: skip
    frame = pd.DataFrame(rows, columns=FILL_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _start_equity(records: list[dict[str, Any]], first_decision: int) -> tuple[float, float]:
    """Equity and position held just before the first compared decision."""
    before = [r for r in records[:first_decision] if r.get("type") == "state"]
    if before:
        return float(before[-1]["equity"]), float(before[-1]["quantity"])
    after = next(r for r in records if r.get("type") == "state")
    return float(after.get("equity") or after["cash"]), 0.0


def _relative(live: float, expected: float) -> float:
    return abs(live - expected) / max(abs(expected), PRICE_EPSILON)


def compare_live_with_backtest(
    version: ModelVersion,
    journal_trades: list[dict[str, Any]],
    candles: pd.DataFrame,
    *,
    sentiment: pd.Series | None = None,
    costs: CostPolicy | None = None,
) -> dict[str, Any]:
    """Backtest the version on the bars its journal covers and compare trade by trade.

    ``journal_trades`` are the journal's records (as ``collect_journal`` returns them);
    ``candles`` must cover those bars plus the model's warm-up history. The divergence is
    the largest of: the final equity's relative gap, the largest relative gap of an entry
    or exit price, and the share of trades whose count or entry/exit bar differ. ``costs``
    default to the policy in force for the version's name (the ones its hosts trade at).
    """
    costs = costs if costs is not None else cost_policy_for(version.name)
    records = version_records(version, journal_trades)
    # A decision without a prediction is the engine warming up: it cannot trade there, while
    # the backtest (given the history) could, so the comparison starts at its first prediction.
    decisions = [
        i
        for i, r in enumerate(records)
        if r.get("type") == "decision" and r.get("prediction") is not None
    ]
    states = [r for r in records if r.get("type") == "state" and r.get("last_candle")]
    if not decisions or not states:
        return {"compared": False, "reason": f"no decisions of {version} in the journal"}
    window_start = _utc(records[decisions[0]]["candle"])
    window_end = _utc(states[-1]["last_candle"])
    if candles.empty or candles.index[-1] < window_end or candles.index[0] > window_start:
        return {
            "compared": False,
            "reason": f"the store does not hold the journal's bars {window_start} to {window_end}",
        }
    start_equity, start_position = _start_equity(records, decisions[0])
    try:
        from engine.backtest.runner import load_predictor

        backtest = run_backtest(
            STRATEGY,
            candles.loc[:window_end],
            sentiment=sentiment,
            predictor=load_predictor(version_dir(version)),
            metadata=version.metadata,
            start=window_start,
            end=window_end,
            initial_equity=start_equity,
            fee_bps=costs.fee_bps,
            slippage_bps=costs.slippage_bps,
            allow_in_sample=True,  # behaviour is compared here, not performance
            check_lookahead=False,
        )
    except BacktestError as exc:
        return {"compared": False, "reason": f"backtest failed: {exc}"}
    index = candles.loc[window_start:window_end].index
    interval = pd.Timedelta(milliseconds=interval_ms(version.interval))
    live_fills = _live_fills(records, interval)
    # An order filled as the last bar closed belongs to the bar after the window, which the
    # backtest does not trade either.
    live_fills = live_fills[live_fills["time"] <= window_end]
    live_trades = round_trips(live_fills, index, float(candles["close"].loc[window_end]))
    expected = backtest.result.trades
    live_final = float(states[-1]["equity"])
    report = _trade_by_trade(live_trades, expected)
    equity_gap = _relative(live_final, backtest.result.final_equity)
    report.update(
        {
            "compared": True,
            "window_start": window_start.isoformat(),
            "window_end": window_end.isoformat(),
            "bars": len(index),
            "start_equity": start_equity,
            "started_with_position": start_position != 0.0,
            "live_final_equity": live_final,
            "backtest_final_equity": backtest.result.final_equity,
            "final_equity_divergence": equity_gap,
            "costs": costs.engine_options(),
            "live_costs_differ": session_costs_differences(records, costs),
        }
    )
    report["divergence"] = max(
        equity_gap, report["max_price_divergence"], report["trade_mismatch_share"]
    )
    return json_safe(report)


def _trade_by_trade(live: pd.DataFrame, expected: pd.DataFrame) -> dict[str, Any]:
    mismatches: list[dict[str, Any]] = []
    worst_price = 0.0
    pairs = min(len(live), len(expected))
    for number in range(pairs):
        ours, theirs = live.iloc[number], expected.iloc[number]
        gaps = {
            "entry_price": _relative(float(ours["entry_price"]), float(theirs["entry_price"])),
            "exit_price": _relative(float(ours["exit_price"]), float(theirs["exit_price"])),
        }
        worst_price = max(worst_price, *gaps.values())
        same_times = _utc(ours["entry_time"]) == _utc(theirs["entry_time"]) and _utc(
            ours["exit_time"]
        ) == _utc(theirs["exit_time"])
        if not same_times or max(gaps.values()) > PRICE_EPSILON * 1e6:
            mismatches.append(
                {
                    "trade": number + 1,
                    "live_entry": f"{_utc(ours['entry_time']).isoformat()} @ {ours['entry_price']}",
                    "backtest_entry": f"{_utc(theirs['entry_time']).isoformat()} "
                    f"@ {theirs['entry_price']}",
                    "live_exit": f"{_utc(ours['exit_time']).isoformat()} @ {ours['exit_price']}",
                    "backtest_exit": f"{_utc(theirs['exit_time']).isoformat()} "
                    f"@ {theirs['exit_price']}",
                    "same_times": bool(same_times),
                    **{f"{k}_divergence": v for k, v in gaps.items()},
                }
            )
    unmatched = abs(len(live) - len(expected))
    timing_mismatches = sum(1 for m in mismatches if not m["same_times"])
    total = max(len(live), len(expected), 1)
    return {
        "live_trades": len(live),
        "backtest_trades": len(expected),
        "mismatched_trades": mismatches[:20],
        "mismatch_count": len(mismatches) + unmatched,
        "max_price_divergence": worst_price,
        "trade_mismatch_share": (timing_mismatches + unmatched) / total,
    }


def live_comparison(version: ModelVersion, data_dir: Path | None = None) -> dict[str, Any]:
    """Compare every production journal of ``version`` with a backtest over its bars."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    targets = [
        t
        for t in DeploymentTarget.objects.filter(environment=Environment.PRODUCTION)
        if live_version_on_target(t) == version
    ]
    comparisons: list[dict[str, Any]] = []
    if not targets:
        return {"targets": [], "comparisons": comparisons}
    try:
        candles = read_candles(data_dir, version.symbol, version.interval).frame
        sentiment = _sentiment_for(version, data_dir)
    except DataError as exc:
        return {"targets": [t.name for t in targets], "error": str(exc), "comparisons": []}
    for target in targets:
        for journal in collect_journal(target):
            where = {k: journal.get(k) for k in ("target", "host", "file")}
            if "error" in journal:
                comparisons.append({**where, "compared": False, "reason": journal["error"]})
                continue
            found = compare_live_with_backtest(
                version, journal["records"], candles, sentiment=sentiment
            )
            comparisons.append({**where, **found})
    return {"targets": [t.name for t in targets], "comparisons": comparisons}


def _sentiment_for(version: ModelVersion, data_dir: Path) -> pd.Series | None:
    if not (version.metadata or {}).get("uses_sentiment"):
        return None
    try:
        return read_sentiment(data_dir).frame
    except StoreEmptyError:
        return None
