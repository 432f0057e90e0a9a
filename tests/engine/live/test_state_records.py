"""State records are written, and fsynced, only when what the engine holds or intends
changed; a restart still never decides a bar twice nor skips one (issue 29)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.live.candles import candles_from_frame
from engine.live.journal import read_journal
from tests.engine.live.helpers import Alternating, minute_candles, paper_engine

MINUTE = pd.Timedelta(minutes=1)


def _records(folder: Path, kind: str) -> list[dict]:
    records, _state = read_journal(folder / "btcusdt-paper.jsonl")
    return [r for r in records if r["type"] == kind]


def test_holding_a_position_writes_no_state_records(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, interval=MINUTE)  # buy and hold: long from the second bar
    for candle in candles_from_frame(minute_candles(30)):
        engine.on_candle(candle)
    engine.journal.close()

    states = _records(tmp_path, "state")
    decisions = _records(tmp_path, "decision")
    assert len(decisions) == 30
    # The first bar (decides long), the fill at the second bar's open; nothing after.
    assert 2 <= len(states) <= 4
    assert states[-1]["quantity"] > 0


def test_every_fill_is_followed_by_its_state_record(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, interval=MINUTE, strategy=Alternating())
    for candle in candles_from_frame(minute_candles(12)):
        engine.on_candle(candle)
    engine.journal.close()
    records, _state = read_journal(tmp_path / "btcusdt-paper.jsonl")
    kinds = [r["type"] for r in records]
    fills = [i for i, kind in enumerate(kinds) if kind == "fill"]
    assert len(fills) >= 2
    for at in fills:
        # The next record that is not the same step's bookkeeping is the state after it.
        following = next(r for r in records[at + 1 :] if r["type"] in ("state", "decision"))
        assert following["type"] == "state", kinds
        assert following["quantity"] == sum(
            (f["quantity"] if f["side"] == "buy" else -f["quantity"]) - f["base_fee"]
            for f in records[: at + 1]
            if f["type"] == "fill"
        )


def test_a_restart_resumes_after_the_last_decided_bar(tmp_path: Path) -> None:
    bars = candles_from_frame(minute_candles(40))
    first = paper_engine(tmp_path, interval=MINUTE)
    for candle in bars[:25]:
        first.on_candle(candle)
    first.journal.close()

    second = paper_engine(tmp_path, interval=MINUTE)
    assert second.last_candle == bars[24].open_time  # from the decision record, not a state
    skipped = [second.on_candle(candle).skipped for candle in bars]
    second.journal.close()

    assert skipped[:25] == ["already processed"] * 25 and skipped[25:] == [None] * 15
    decided = [r["candle"] for r in _records(tmp_path, "decision")]
    assert decided == [c.key for c in bars]  # each bar once, none missing
    assert second.quantity == first.quantity  # held, nothing traded again
