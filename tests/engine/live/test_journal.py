"""The journal: durable records, rebuilt state, and loud errors on any corruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.live.journal import Journal, JournalError, archive_other_model, read_journal


def _write_sample(path: Path) -> None:
    journal = Journal(path)
    journal.append("order", order_id="o1", candle="c1", side="buy", quantity=1.0, reason="signal")
    journal.append(
        "fill", order_id="o1", candle="c1", side="buy", quantity=1.0, price=10.0, fee=0.01
    )
    journal.append(
        "state", last_candle="c1", cash=89.99, quantity=1.0, pending_target=None, equity=100.0
    )
    journal.append("kill_switch", latched=True, reason="test")
    journal.close()


def test_state_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _write_sample(path)
    records, state = read_journal(path)
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert (state.quantity, state.cash, state.last_candle) == (1.0, 89.99, "c1")
    assert state.kill_switch is True
    assert state.unsettled_orders == []
    assert state.order_candles == ["c1"]


def test_an_order_without_fill_is_reported_unsettled(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.append("order", order_id="o9", candle="c", side="sell", quantity=2.0, reason="signal")
    journal.close()
    assert Journal(path).state.unsettled_orders == ["o9"]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda lines: lines.__setitem__(1, "{not json\n"), "line 2: invalid JSON"),
        (lambda lines: lines.__delitem__(1), "line 2: sequence 3, expected 2"),
        (lambda lines: lines.__setitem__(-1, lines[-1][:-9]), "line 4: truncated last line"),
        (
            lambda lines: lines.__setitem__(
                2, lines[2].replace('"quantity":1.0', '"quantity":5.0')
            ),
            "line 3: checksum mismatch",
        ),
    ],
    ids=["invalid-json", "missing-line", "truncated", "altered"],
)
def test_a_corrupt_journal_is_refused_with_file_and_line(tmp_path: Path, spoil, message) -> None:
    path = tmp_path / "j.jsonl"
    _write_sample(path)
    lines = path.read_text().splitlines(keepends=True)
    spoil(lines)
    path.write_text("".join(lines))
    with pytest.raises(JournalError, match=message) as caught:
        Journal(path)
    assert str(path) in str(caught.value)


def test_unknown_record_types_and_missing_fields_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    with pytest.raises(ValueError, match="missing price"):
        journal.append("fill", order_id="o", candle="c", side="buy", quantity=1.0, fee=0.0)
    journal.close()
    path.write_text(json.dumps({"seq": 1, "at": "x", "type": "teleport", "sha": "0"}) + "\n")
    with pytest.raises(JournalError, match="unknown record type 'teleport'"):
        read_journal(path)


def test_a_long_journal_is_archived_and_its_state_carried_over(tmp_path: Path) -> None:
    import hashlib

    from engine.live.journal import rotate_if_large

    path = tmp_path / "btcusdt-paper.jsonl"
    _write_sample(path)
    assert rotate_if_large(path, max_records=10) is None, "short journals stay as they are"
    before = path.read_bytes()

    archive = rotate_if_large(path, max_records=4)

    assert archive is not None and archive.read_bytes() == before
    records, state = read_journal(path)
    assert records[0]["type"] == "carried_over"
    assert records[0]["archive_sha256"] == hashlib.sha256(before).hexdigest()
    assert (state.quantity, state.cash, state.last_candle) == (1.0, 89.99, "c1")
    assert state.kill_switch is True and state.kill_switch_reason == "test"
    assert state.order_candles == ["c1"]


def test_a_paper_journal_of_another_model_is_set_aside_and_never_inherited(
    tmp_path: Path,
) -> None:
    """A newly staged version starts from the initial cash: its forward run is its own."""
    path = tmp_path / "btcusdt-paper.jsonl"
    assert archive_other_model(path, "a" * 64) is None  # no journal yet: nothing to do
    journal = Journal(path)
    journal.append(
        "session_start",
        mode="paper",
        model_name="m",
        model_version=1,
        pid=1,
        model_sha256="a" * 64,
    )
    journal.append(
        "state", last_candle="2024-01-01T00:00:00+00:00", cash=5.0, quantity=1.0,
        pending_target=None, current_target=1.0, equity=100.0, day="2024-01-01",
        day_start_equity=100.0,
    )  # fmt: skip
    journal.close()
    assert archive_other_model(path, "a" * 64) is None  # the same model resumes its run
    archive = archive_other_model(path, "b" * 64)
    assert archive is not None and archive.name.startswith("btcusdt-paper.")
    assert not path.exists()
    assert read_journal(archive)[1].quantity == 1.0  # the record itself is kept whole
