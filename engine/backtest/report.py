"""Report files of a backtest: equity and drawdown chart (PNG), trades (CSV), metrics (JSON)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest.metrics import drawdown_series
from engine.backtest.simulator import BacktestResult


def json_safe(value: Any) -> Any:
    """Plain JSON values: inf/NaN become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def write_metrics_json(payload: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(json_safe(payload), indent=2, sort_keys=True) + "\n")
    return path


def write_trades_csv(result: BacktestResult, path: Path) -> Path:
    result.trades.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    return path


def _figure(**options: Any) -> Any:
    """A matplotlib Figure, imported here, not at module level: a production host runs the
    engine from requirements/engine.txt, which has no matplotlib, and never writes a plot.
    The Figure itself, not pyplot: no backend or figure manager to start (files only;
    workers and hosts have no display), and a third of the import time."""
    from matplotlib.figure import Figure

    return Figure(**options)


def plot_equity(result: BacktestResult, path: Path, title: str = "") -> Path:
    """Strategy against buy-and-hold, entries and exits marked, drawdowns below."""
    initial = result.config.initial_equity
    figure = _figure(figsize=(11, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(result.equity.index, result.equity.to_numpy(), label="strategy", color="tab:blue")
    if result.buy_and_hold_equity is not None:
        top.plot(
            result.buy_and_hold_equity.index,
            result.buy_and_hold_equity.to_numpy(),
            label="buy and hold",
            color="tab:gray",
            alpha=0.8,
        )
    trades = result.trades
    if len(trades):
        top.scatter(
            trades["entry_time"],
            result.equity.reindex(trades["entry_time"]).to_numpy(),
            marker="^",
            color="tab:green",
            s=18,
            label="entry",
            zorder=3,
        )
        exits = trades[trades["exit_reason"] != "open"]
        top.scatter(
            exits["exit_time"],
            result.equity.reindex(exits["exit_time"]).to_numpy(),
            marker="v",
            color="tab:red",
            s=18,
            label="exit",
            zorder=3,
        )
    top.set_ylabel("equity")
    top.set_title(title or "backtest")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    drawdown = -drawdown_series(result.equity, initial) * 100
    bottom.fill_between(drawdown.index, drawdown.to_numpy(), 0, color="tab:red", alpha=0.4)
    if result.buy_and_hold_equity is not None:
        hold_dd = -drawdown_series(result.buy_and_hold_equity, initial) * 100
        bottom.plot(hold_dd.index, hold_dd.to_numpy(), color="tab:gray", linewidth=0.8)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def write_report(
    result: BacktestResult,
    output_dir: Path,
    stem: str,
    payload: dict[str, Any] | None = None,
    title: str = "",
) -> dict[str, Path]:
    """Write `<stem>_equity.png`, `<stem>_trades.csv`, `<stem>_metrics.json`; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return {
        "plot": plot_equity(result, output_dir / f"{stem}_equity.png", title),
        "trades_csv": write_trades_csv(result, output_dir / f"{stem}_trades.csv"),
        "metrics_json": write_metrics_json(
            payload if payload is not None else result.metrics, output_dir / f"{stem}_metrics.json"
        ),
    }
