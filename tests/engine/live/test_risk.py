"""Risk limits from the host: position notional, orders per hour, and the latching kill switch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from engine.live.candles import candles_from_frame
from engine.live.config import RiskLimits
from tests.engine.live.conftest import run_engine
from tests.engine.live.helpers import Alternating, minute_candles, paper_engine

# June 2022: BTC fell from about 29k to 22k in two days.
CRASH = ("2022-06-10", "2022-06-16")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kill_switch_latches_flattens_and_survives_a_restart(all_candles, tmp_path: Path) -> None:
    bars = candles_from_frame(all_candles.loc[CRASH[0] : CRASH[1]])
    limits = RiskLimits(max_daily_loss=300.0)
    engine = paper_engine(tmp_path, limits=limits)
    for candle in bars[:-24]:
        engine.on_candle(candle)
    assert engine.kill_switch, "a 20% crash on a fully long book must breach a 3% daily loss"
    assert engine.quantity == 0.0
    journal = tmp_path / "btcusdt-paper.jsonl"
    records = _records(journal)
    latch = next(i for i, r in enumerate(records) if r["type"] == "kill_switch")
    assert "max_daily_loss" in records[latch]["reason"]
    after = [r for r in records[latch:] if r["type"] == "fill"]
    assert [(f["side"]) for f in after] == ["sell"], "only the flattening sell after the latch"
    assert json.loads((tmp_path / "status.json").read_text())["kill_switch"] is True
    engine.journal.close()

    restarted = paper_engine(tmp_path, limits=limits)
    assert restarted.kill_switch
    for candle in bars[-24:]:
        restarted.on_candle(candle)
    assert restarted.quantity == 0.0
    assert not [r for r in _records(journal)[len(records) :] if r["type"] in ("order", "fill")]
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["kill_switch"]) == ("halted", True)
    restarted.journal.close()

    reset = run_engine(
        tmp_path, "reset-kill-switch", "--journal-dir", tmp_path, "--reason", "reviewed by ops"
    )
    assert reset.returncode == 0, reset.stderr
    assert "kill switch reset" in reset.stderr
    resumed = paper_engine(tmp_path, limits=limits)
    assert not resumed.kill_switch
    more = candles_from_frame(all_candles.loc["2022-06-17":"2022-06-17 03:00"])
    for candle in more:
        resumed.on_candle(candle)
    assert resumed.quantity > 0, "trading resumes only after the explicit reset"


def test_orders_per_hour_are_capped_and_refusals_journaled(tmp_path: Path) -> None:
    engine = paper_engine(
        tmp_path,
        limits=RiskLimits(max_orders_per_hour=3),
        strategy=Alternating(),
        interval=pd.Timedelta(minutes=1),
    )
    for candle in candles_from_frame(minute_candles(12)):
        engine.on_candle(candle)
    records = _records(tmp_path / "btcusdt-paper.jsonl")
    fills = [r for r in records if r["type"] == "fill"]
    refused = [r for r in records if r["type"] == "order_rejected"]
    assert len(fills) == 3
    assert refused and all("max_orders_per_hour=3" in r["reason"] for r in refused)


def test_position_notional_is_capped(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, limits=RiskLimits(max_position_notional=1_000.0))
    frame = minute_candles(3)
    for candle in candles_from_frame(frame):
        engine.on_candle(candle)
    assert 0 < engine.quantity * frame["open"].iloc[1] <= 1_000.0 + 1e-6
