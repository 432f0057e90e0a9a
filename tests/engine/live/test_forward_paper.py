"""Forward paper trading: the real engine on the fake exchange's accelerated, paced clock.

`python -m engine.live ml_basic --paper-trading --clock exchange` against the fake Binance
serving the stored BTCUSDT candles after the tiny model's training data, about 5 bars a
second. The clock is paced by its readers, so nothing here depends on how fast the machine
is: a slow, killed or cut-off engine never gets a bar too old to trade.

Class of defect: a bar lost or counted twice across an engine restart or an exchange
outage, or a live run that trades differently from a replay of the same candles.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.inference import OnnxPredictor
from engine.live.journal import read_journal
from engine.live.paper import PaperRunResult, run_paper_replay
from engine.strategies.ml_basic import round_trip_cost
from tests.engine.live.conftest import PROJECT_ROOT, engine_command, engine_env
from tests.fakes.binance_server import CandleTable, FakeBinanceServer, banned, rate_limited
from tests.fakes.fng_server import FakeFearGreedServer, entries_from_csv
from tests.fakes.market_clock import PacedClock
from tests.support.budgets import budget

pytestmark = pytest.mark.slow

HOUR = pd.Timedelta(hours=1)
HOUR_MS = 3_600_000
SPEED = 20_000.0  # an hour bar in 0.18 s: 14 days in about a minute


@dataclass
class Exchange:
    binance: FakeBinanceServer
    fng: FakeFearGreedServer
    clock: PacedClock
    origin: pd.Timestamp


@pytest.fixture
def exchange(shared_data_dir: Path, after_training: pd.Timestamp) -> Iterator[Exchange]:
    """Stored candles (unshifted) and Fear & Greed, on a clock starting after training."""
    origin = after_training + pd.Timedelta(hours=6)
    clock = PacedClock(origin_ms=origin.value // 10**6, speed=SPEED, step_ms=HOUR_MS)
    binance = FakeBinanceServer(clock=clock)
    table = CandleTable.from_csv(shared_data_dir / "BTCUSDT-1h.csv", "1h")
    binance.market.add_symbol("BTCUSDT", listed_at_ms=int(table.open_ms[0]), table=table)
    fng = FakeFearGreedServer(
        entries_from_csv(shared_data_dir / "fear_greed_index.csv"), now_ms=clock.now_ms
    )
    with binance, fng:
        yield Exchange(binance, fng, clock, origin)


def _threshold(model_dir: Path, candles: pd.DataFrame, sentiment: pd.Series, start) -> float:
    """The median prediction net of a round trip: the tiny model switches often (trades)."""
    window = candles.loc[start - pd.Timedelta(days=2) : start + pd.Timedelta(days=4)]
    predictions = OnnxPredictor.from_dir(model_dir).predict(window, sentiment)
    return float(predictions.median()) - round_trip_cost(DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS)


def _engine_args(model_dir: Path, tmp_path: Path, data: Path, ex: Exchange, threshold: float):
    return [
        "ml_basic", "--paper-trading", "--clock", "exchange", "--poll-seconds", "0.02",
        "--binance-url", ex.binance.url, "--fng-url", ex.fng.url,
        "--model-dir", model_dir, "--sentiment-csv", data / "fear_greed_index.csv",
        "--status-file", tmp_path / "status.json", "--journal-dir", tmp_path / "journal",
        "--threshold", repr(threshold),
    ]  # fmt: skip


def _start(tmp_path: Path, args: list, log_name: str) -> subprocess.Popen:
    log = (tmp_path / log_name).open("w")
    return subprocess.Popen(
        engine_command(*args), cwd=PROJECT_ROOT, env=engine_env(tmp_path),
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _records(journal: Path) -> list[dict[str, Any]]:
    return read_journal(journal, running=True)[0]  # the engine may be writing a line


def _decided(journal: Path) -> list[pd.Timestamp]:
    return [pd.Timestamp(r["candle"]) for r in _records(journal) if r["type"] == "decision"]


def _wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + budget(seconds)
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _stop(process: subprocess.Popen, tmp_path: Path, log_name: str) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=budget(30))
    finally:
        if process.poll() is None:
            process.kill()
    text = (tmp_path / log_name).read_text()
    assert process.returncode == 0, text[-3000:]
    return text


def _every_bar_once(records: list[dict[str, Any]]) -> pd.DatetimeIndex:
    """The decided bars: unique, and every hour from the first to the last."""
    decided = [pd.Timestamp(r["candle"]) for r in records if r["type"] == "decision"]
    assert len(decided) == len(set(decided)), "a bar was decided twice"
    bars = pd.DatetimeIndex(decided)
    assert bars.is_monotonic_increasing
    gaps = bars[1:] - bars[:-1]
    assert (gaps == HOUR).all(), f"bars lost: gaps {sorted(set(gaps))}"
    return bars


def _replay(
    model_dir: Path,
    candles: pd.DataFrame,
    sentiment: pd.Series,
    bars: pd.DatetimeIndex,
    threshold: float,
    folder: Path,
) -> tuple[PaperRunResult, list[dict[str, Any]]]:
    """The same candles through the same engine loop in-process, orders at each close
    (as the live engine places them), at the same costs, from a flat start."""
    history = OnnxPredictor.from_dir(model_dir).required_history + 1
    start = candles.index.get_loc(bars[0]) - history - 5
    window = candles.iloc[start : candles.index.get_loc(bars[-1]) + 1]
    result = run_paper_replay(
        model_dir, window, sentiment, strategy_params={"threshold": threshold},
        journal_dir=folder / "replay", execute_on_close=True, trade_from=bars[0],
    )  # fmt: skip
    assert result.journal is not None
    return result, read_journal(result.journal)[0]


def _fills(records: list[dict[str, Any]]) -> list[tuple[str, str, float, float, float]]:
    return [
        (r["candle"], r["side"], r["quantity"], r["price"], r["fee"])
        for r in records
        if r["type"] == "fill"
    ]


def test_a_killed_engine_resumes_without_losing_a_bar_and_trades_as_a_replay(
    model_dir, all_candles, sentiment, shared_data_dir, exchange, tmp_path
) -> None:
    threshold = _threshold(model_dir, all_candles, sentiment, exchange.origin)
    args = _engine_args(model_dir, tmp_path, shared_data_dir, exchange, threshold)
    journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
    first_bar = exchange.origin.floor("h")  # the paced clock waits there for the engine

    first = _start(tmp_path, args, "first.log")
    try:
        _wait_for(lambda: len(_decided(journal)) >= 40, 60, "40 bars decided")
        # Kill it while it waits for the next bar, so that the kill cannot land between a
        # decision and its fill (that case moves the fill to the next open, by design).
        exchange.clock.hold()
        closed = (exchange.clock.now_ms() // HOUR_MS - 1) * HOUR_MS
        _wait_for(
            lambda: _decided(journal)[-1].value // 10**6 == closed, 30, "the held bar decided"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=budget(10))
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = _decided(journal)[-1]
    exchange.clock.release()  # the exchange goes on while the engine is dead
    time.sleep(0.5)
    assert exchange.clock.now_ms() < killed_at.value // 10**6 + 3 * HOUR_MS, "paced"

    second = _start(tmp_path, args, "second.log")
    try:
        _wait_for(
            lambda: (
                len(_decided(journal)) >= 100
                and _status(tmp_path / "status.json").get("pid") == second.pid
            ),
            90,
            "100 bars decided after the restart",
        )
    finally:
        log = _stop(second, tmp_path, "second.log")
    assert "resumed from journal" in log

    records = read_journal(journal)[0]
    sessions = [r for r in records if r["type"] == "session_start"]
    assert [s["clock"] for s in sessions] == ["exchange", "exchange"]
    bars = _every_bar_once(records)
    # The paced clock waits for the first engine with the origin's bar closed and tradable
    # (one bar earlier if the engine asked before that bar closed).
    assert first_bar - HOUR <= bars[0] <= first_bar
    assert killed_at in bars and killed_at + HOUR in bars, "the bar after the kill was traded"
    fills = _fills(records)
    assert len(fills) >= 4, "the comparison needs trades"

    replay, replayed = _replay(model_dir, all_candles, sentiment, bars, threshold, tmp_path)
    assert [(r["candle"], r["target"]) for r in records if r["type"] == "decision"] == [
        (r["candle"], r["target"]) for r in replayed if r["type"] == "decision"
    ]
    expected = _fills(replayed)
    assert [f[:2] for f in fills] == [f[:2] for f in expected]
    for live, same in zip(fills, expected, strict=True):
        assert live[2:] == pytest.approx(same[2:], rel=1e-9)
    final = read_journal(journal)[1]  # what a third start would resume from
    assert final.last_candle == bars[-1].isoformat()
    assert final.quantity == pytest.approx(replay.position.iloc[-1], rel=1e-9, abs=1e-12)
    assert final.cash is not None
    marked = final.cash + final.quantity * float(all_candles["close"].loc[bars[-1]])
    assert marked == pytest.approx(replay.equity.iloc[-1], rel=1e-9)


def test_an_unreachable_exchange_is_a_feed_error_then_the_run_resumes_without_losing_bars(
    model_dir, all_candles, sentiment, shared_data_dir, exchange, tmp_path
) -> None:
    threshold = _threshold(model_dir, all_candles, sentiment, exchange.origin)
    args = _engine_args(model_dir, tmp_path, shared_data_dir, exchange, threshold)
    journal, status_file = tmp_path / "journal" / "btcusdt-paper.jsonl", tmp_path / "status.json"

    engine = _start(tmp_path, args, "engine.log")
    try:
        _wait_for(lambda: len(_decided(journal)) >= 10, 60, "10 bars decided")
        # 418 (banned) on every path, then 429, then the server gone altogether.
        exchange.binance.inject(banned(retry_after=1, times=3))
        exchange.binance.inject(rate_limited(retry_after=1, times=None))
        failing = _wait_for(
            lambda: (s := _status(status_file)).get("feed_error") and s, 30, "a feed error"
        )
        assert "APIError(code=-1003)" in failing["feed_error"]
        assert failing["state"] == "running"
        stalled_at = _decided(journal)[-1]
        exchange.binance.stop()
        _wait_for(
            lambda: "Connection" in (_status(status_file).get("feed_error") or ""),
            30,
            "connection refused in the status",
        )
        beat = _status(status_file)["heartbeat_at"]
        _wait_for(lambda: _status(status_file).get("heartbeat_at", beat) > beat, 30, "a heartbeat")
        assert _decided(journal)[-1] == stalled_at, "no bar while the exchange is away"
        exchange.binance.clear_faults()
        exchange.binance.start()  # same port: the engine's URL still works
        _wait_for(
            lambda: len(_decided(journal)) >= 40 and _status(status_file).get("feed_error") is None,
            90,
            "the run resumed",
        )
    finally:
        _stop(engine, tmp_path, "engine.log")
    bars = _every_bar_once(read_journal(journal)[0])
    assert stalled_at + HOUR in bars, "the bar that closed during the outage was traded"


@pytest.mark.parametrize("seed", [1, 2])
def test_kills_at_any_moment_never_lose_or_repeat_a_bar(
    seed, model_dir, all_candles, sentiment, shared_data_dir, exchange, tmp_path
) -> None:
    """SIGKILL wherever it lands (mid-bar too, unlike the replay comparison above): every
    bar from the first traded one is decided exactly once, and the journal stays readable."""
    import random

    pick = random.Random(seed)
    threshold = _threshold(model_dir, all_candles, sentiment, exchange.origin)
    args = _engine_args(model_dir, tmp_path, shared_data_dir, exchange, threshold)
    journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
    for run in range(3):
        engine = _start(tmp_path, args, f"run{run}.log")
        try:
            seen = len(_decided(journal))
            _wait_for(lambda seen=seen: len(_decided(journal)) > seen, 60, "a new bar decided")
            time.sleep(pick.uniform(0.0, 1.0))  # anywhere: between bars or inside one
            engine.send_signal(signal.SIGKILL)
            engine.wait(timeout=budget(10))
        finally:
            if engine.poll() is None:
                engine.kill()
    last = _start(tmp_path, args, "last.log")
    try:
        seen = len(_decided(journal))
        _wait_for(lambda: len(_decided(journal)) >= seen + 5, 60, "five bars after the kills")
    finally:
        _stop(last, tmp_path, "last.log")
    records = read_journal(journal)[0]  # whole: a kill never leaves half a record
    assert sum(r["type"] == "session_start" for r in records) == 4
    _every_bar_once(records)


def test_shifted_candles_and_sentiment_trade_as_the_stored_era(
    model_dir, all_candles, sentiment, shared_data_dir, after_training, tmp_path
) -> None:
    """The fakes as processes, the stored bars and Fear & Greed moved 1001 days (whole
    weeks) later together: the engine, with no sentiment file, learns the index from the
    fake API as the days pass and decides exactly as a replay of the stored era."""
    from tests.fakes.processes import exchange_processes

    shift = pd.Timedelta(days=1001)
    stored_origin = after_training + pd.Timedelta(hours=6)
    threshold = _threshold(model_dir, all_candles, sentiment, stored_origin)
    with exchange_processes(
        origin=(stored_origin + shift).isoformat(),
        candles_csv=shared_data_dir / "BTCUSDT-1h.csv",
        sentiment_csv=shared_data_dir / "fear_greed_index.csv",
        shift_days=shift.days,
    ) as urls:
        assert urls.fng is not None
        journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
        engine = _start(tmp_path, [
            "ml_basic", "--paper-trading", "--clock", "exchange", "--poll-seconds", "0.02",
            "--binance-url", urls.binance, "--fng-url", urls.fng, "--model-dir", model_dir,
            "--status-file", tmp_path / "status.json", "--journal-dir", journal.parent,
            "--threshold", repr(threshold),
        ], "engine.log")  # fmt: skip
        try:
            _wait_for(lambda: len(_decided(journal)) >= 30, 60, "30 bars decided")
        finally:
            _stop(engine, tmp_path, "engine.log")
    records = read_journal(journal)[0]
    bars = _every_bar_once(records)
    assert stored_origin + shift - HOUR <= bars[0] <= stored_origin + shift
    live = [
        (pd.Timestamp(r["candle"]) - shift, r["prediction"], r["target"])
        for r in records
        if r["type"] == "decision"
    ]
    assert all(p is not None for _, p, _ in live), "sentiment known for every bar"
    _, replayed = _replay(model_dir, all_candles, sentiment, bars - shift, threshold, tmp_path)
    expected = [
        (pd.Timestamp(r["candle"]), r["prediction"], r["target"])
        for r in replayed
        if r["type"] == "decision"
    ]
    assert [(t, target) for t, _, target in live] == [(t, target) for t, _, target in expected]
    assert [p for _, p, _ in live] == pytest.approx([p for _, p, _ in expected], rel=1e-9)
