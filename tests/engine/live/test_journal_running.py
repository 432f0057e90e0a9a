"""A journal copied while the engine writes it (a forward run collected on a beat).

Class of defect: a copy cut at any byte reads as an error, or as a record that was never
written whole. With `running=True` every cut reads as exactly the whole lines before it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.live.journal import Journal, JournalError, read_journal


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("journal") / "btcusdt-paper.jsonl"
    journal = Journal(path)
    journal.append("session_start", mode="paper", model_name="m", model_version=1,
                   model_sha256="0" * 64, pid=1)  # fmt: skip
    for hour in range(12):
        candle = f"2024-01-26T{hour:02d}:00:00+00:00"
        journal.append("decision", candle=candle, prediction=0.001 * hour, target=hour % 2)
        journal.append("state", last_candle=candle, cash=100.0 + hour, quantity=0.5 * (hour % 2),
                       pending_target=None, equity=101.0 + hour)  # fmt: skip
    journal.close()
    return path.read_bytes()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_copy_cut_at_any_byte_reads_as_its_whole_lines(written, data, tmp_path_factory):
    cut = data.draw(st.integers(0, len(written)))
    copy = tmp_path_factory.mktemp("copy") / "btcusdt-paper.jsonl"
    copy.write_bytes(written[:cut])
    whole_lines = written[:cut].count(b"\n")

    records, state = read_journal(copy, running=True)

    assert [r["seq"] for r in records] == list(range(1, whole_lines + 1))
    assert state.records == whole_lines
    if cut and written[cut - 1 : cut] != b"\n":
        with pytest.raises(JournalError, match="truncated last line"):
            read_journal(copy)  # a stopped engine's journal must end whole


def test_a_corrupt_line_is_still_an_error_while_running(written, tmp_path):
    copy = tmp_path / "btcusdt-paper.jsonl"
    lines = written.splitlines(keepends=True)
    copy.write_bytes(b"".join([lines[0], lines[1].replace(b'"target"', b'"targ"'), *lines[2:]]))
    with pytest.raises(JournalError, match="line 2"):
        read_journal(copy, running=True)
