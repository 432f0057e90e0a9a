"""The engine on the exchange's clock, and the fake exchange's accelerated, paced clock.

Class of defect: a bar that reaches the engine "too old to trade" because the exchange's
clock ran ahead of a slow, killed or cut-off reader. The paced clock must rule it out for
any sequence of delays (Hypothesis), and the engine must read the exchange's time once per
poll round, treating a failed time request like a failed klines request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.live.candles import epoch_ns
from engine.live.feeds import BinanceKlineFeed, ExchangeClock, FeedError, make_binance_client
from tests.fakes.binance_server import CandleTable, FakeBinanceServer, banned, rate_limited
from tests.fakes.http_fake import FakeResponse, Fault
from tests.fakes.market_clock import PacedClock

HOUR = 3_600_000
ORIGIN = 1_706_227_200_000  # 2024-01-26 00:00 UTC, on a bar boundary
HISTORY = 5


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# One poll round of a reader: wait before reading the time, wait before asking for klines,
# and how many of the bars it received it processes before it is killed (None: all).
ROUNDS = st.lists(
    st.tuples(
        st.floats(0.0, 2.0),
        st.floats(0.0, 2.0),
        st.none() | st.integers(0, 2),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(rounds=ROUNDS, speed=st.sampled_from([500.0, 20_000.0, 1e7]))
def test_no_reader_delay_makes_a_bar_untradable(rounds, speed) -> None:
    """The engine's own rules (feeds.BinanceKlineFeed), any delays, any kills: from the
    first traded bar on, every bar arrives once, in order, and tradable."""
    monotonic = FakeMonotonic()
    clock = PacedClock(origin_ms=ORIGIN + 1234, speed=speed, step_ms=HOUR, monotonic=monotonic)
    last: int | None = None  # what the journal says was processed
    first_traded: int | None = None
    for before_time, before_klines, killed_after in rounds:
        monotonic.now += before_time
        now = clock.now_ms()  # the round's time: /api/v3/time
        monotonic.now += before_klines
        start = last + HOUR if last is not None else (now // HOUR - HISTORY - 1) * HOUR
        clock.acknowledge(start, HOUR)
        served_until = clock.now_ms()  # the klines answer holds bars opened by then
        closed = [o for o in range(start, served_until + 1, HOUR) if o + HOUR - 1 < now]
        for count, open_ms in enumerate(closed):
            if killed_after is not None and count == killed_after:
                break  # SIGKILL: received, never processed
            tradable = now - (open_ms + HOUR - 1) < HOUR
            if first_traded is None:  # warming up (a kill may cut it; the restart goes on)
                if tradable:
                    first_traded = open_ms
                else:
                    assert open_ms != closed[-1], "the newest closed bar must be tradable"
            else:
                assert open_ms == last + HOUR, "a bar was skipped or repeated"
                assert tradable, f"bar {open_ms} arrived too old to trade at {now}"
            last = open_ms
        # Never more than one bar ahead of the reader: at most one closed, unprocessed bar.
        wanted = last + HOUR if first_traded is not None and last is not None else ORIGIN
        assert clock.now_ms() < wanted + 2 * HOUR - 1


def test_the_clock_runs_at_its_speed_and_waits_at_the_pace_limit() -> None:
    monotonic = FakeMonotonic()
    clock = PacedClock(origin_ms=ORIGIN, speed=3600.0, step_ms=HOUR, monotonic=monotonic)
    monotonic.now += 0.5
    assert clock.now_ms() == ORIGIN + HOUR // 2
    monotonic.now += 100.0  # nobody reads: the clock waits with bar ORIGIN closed, tradable
    assert clock.now_ms() == ORIGIN + 2 * HOUR - 2
    clock.acknowledge(ORIGIN + 50 * HOUR, HOUR)  # a request for the future: clamped
    assert clock.wanted_ms == ORIGIN + HOUR
    assert clock.now_ms() == ORIGIN + 2 * HOUR - 2, "no jump: the lost time is not banked"
    monotonic.now += 0.25
    assert clock.now_ms() == ORIGIN + 2 * HOUR - 2 + HOUR // 4
    clock.acknowledge(ORIGIN + 2 * HOUR, 60_000)  # another interval does not pace
    assert clock.wanted_ms == ORIGIN + HOUR
    monotonic.now += 100.0
    assert clock.now_ms() == ORIGIN + 3 * HOUR - 2
    with pytest.raises(ValueError, match="speed"):
        PacedClock(origin_ms=ORIGIN, speed=float("nan"), step_ms=HOUR)


# ----------------------------------------------------------------------- the engine's side


@pytest.fixture
def paced() -> Iterator[tuple[FakeBinanceServer, FakeMonotonic]]:
    monotonic = FakeMonotonic()
    clock = PacedClock(origin_ms=ORIGIN, speed=3600.0, step_ms=HOUR, monotonic=monotonic)
    fake = FakeBinanceServer(clock=clock)
    fake.market.add_symbol("BTCUSDT", listed_at_ms=ORIGIN - 400 * HOUR)
    with fake:
        yield fake, monotonic


def _feed(server: FakeBinanceServer, clock) -> BinanceKlineFeed:
    return BinanceKlineFeed(
        make_binance_client(base_url=server.url),
        symbol="BTCUSDT",
        interval="1h",
        interval_delta=pd.Timedelta(hours=1),
        last_processed=None,
        history=HISTORY,
        stop_event=threading.Event(),
        poll_seconds=0.0,
        backoff_initial=0.01,
        backoff_max=0.02,
        clock=clock,
    )


def test_the_feed_reads_the_exchange_time_once_per_round(paced) -> None:
    server, monotonic = paced
    clock = ExchangeClock(make_binance_client(base_url=server.url))
    feed = _feed(server, clock)
    monotonic.now += 1.5  # 1.5 exchange hours: bar ORIGIN has closed
    items = feed.fetch_closed()
    opens = [epoch_ns(i.candle.open_time) // 10**6 for i in items if i.candle is not None]
    assert opens[-1] == ORIGIN and items[-1].tradable
    assert clock() == (ORIGIN + HOUR + HOUR // 2) / 1000
    assert len(server.requests_to("/api/v3/time")) == 1
    monotonic.now += 1.0  # the clock waits at the pace limit until bar ORIGIN+1h is wanted
    assert feed.fetch_closed() == []
    assert clock() == (ORIGIN + 2 * HOUR - 2) / 1000
    monotonic.now += 1.0
    items = feed.fetch_closed()
    assert [epoch_ns(i.candle.open_time) // 10**6 for i in items] == [ORIGIN + HOUR]
    assert items[0].tradable
    assert len(server.requests_to("/api/v3/time")) == 3


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            banned(path="/api/v3/time", times=None),
            "server time request failed: APIError(code=-1003)",
        ),
        (
            Fault(FakeResponse.json({"serverTime": "soon"}), path="/api/v3/time", times=None),
            "server time answer has no numeric serverTime",
        ),
        (
            Fault(FakeResponse.json({"serverTime": -5}), path="/api/v3/time", times=None),
            "server time answer is not a positive time",
        ),
    ],
)
def test_a_failed_time_request_is_a_feed_error_then_a_heartbeat(paced, fault, expected) -> None:
    server, monotonic = paced
    feed = _feed(server, ExchangeClock(make_binance_client(base_url=server.url)))
    server.inject(fault)
    with pytest.raises(FeedError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        feed.fetch_closed()
    assert not server.klines_requests(), "no klines asked without knowing the time"
    heartbeat = next(iter(feed))
    assert heartbeat.candle is None and heartbeat.error is not None
    assert expected.split(":")[0] in heartbeat.error
    server.clear_faults()
    monotonic.now += 1.5
    items = feed.fetch_closed()
    assert items and items[-1].tradable and items[-1].error is None


def test_stored_candles_are_served_shifted_with_their_gaps(tmp_path) -> None:
    csv = tmp_path / "candles.csv"
    csv.write_text(
        "date,open,high,low,close,volume\n"
        "2022-01-01 00:00:00,10,12,9,11,1.5\n"
        "2022-01-01 01:00:00,11,13,10,12,2\n"
        "2022-01-01 03:00:00,12,14,11,13,3\n"
    )
    first = int(pd.Timestamp("2022-01-01", tz="UTC").value // 10**6)
    table = CandleTable.from_csv(csv, "1h", shift_ms=ORIGIN - first)
    server = FakeBinanceServer(now_ms=ORIGIN + 10 * HOUR)
    server.market.add_symbol("BTCUSDT", listed_at_ms=ORIGIN, table=table)
    with server:
        rows = make_binance_client(base_url=server.url).get_klines(
            symbol="BTCUSDT", interval="1h", startTime=ORIGIN, limit=10
        )
        other = make_binance_client(base_url=server.url).get_klines(
            symbol="BTCUSDT", interval="1m", startTime=ORIGIN, limit=10
        )
    assert [r[0] for r in rows] == [ORIGIN, ORIGIN + HOUR, ORIGIN + 3 * HOUR]
    assert [float(r[4]) for r in rows] == [11.0, 12.0, 13.0]
    assert rows[0][6] == ORIGIN + HOUR - 1 and float(rows[0][5]) == 1.5
    assert other == [], "stored candles exist for their own interval only"


# ----------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--poll-seconds", "0"], "'0' must be a finite number of seconds above 0"),
        (["--poll-seconds", "-1"], "'-1' must be a finite number of seconds above 0"),
        (["--poll-seconds", "inf"], "'inf' must be a finite number of seconds above 0"),
        (["--poll-seconds", "nan"], "'nan' must be a finite number of seconds above 0"),
        (["--poll-seconds", "soon"], "'soon' is not a number of seconds"),
        (["--clock", "ntp"], "argument --clock: invalid choice: 'ntp'"),
        (["--clock", "exchange", "--replay"], "--clock exchange follows a live exchange"),
    ],
)
def test_bad_clock_options_are_one_line_errors(argv, message, capsys) -> None:
    from engine.live.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["ml_basic", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_clock_options_reach_the_engine() -> None:
    from engine.live.cli import build_parser, options_from_args

    fast = options_from_args(
        build_parser().parse_args(["ml_basic", "--clock", "exchange", "--poll-seconds", "0.02"])
    )
    assert (fast.clock, fast.poll_seconds) == ("exchange", 0.02)
    default = options_from_args(build_parser().parse_args(["ml_basic"]))
    assert (default.clock, default.poll_seconds) == ("system", 5.0)


@pytest.mark.parametrize("module", ["tests.fakes.binance_server", "tests.fakes.fng_server"])
def test_the_fakes_run_as_their_own_processes(module, shared_data_dir) -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    from tests.engine.live.conftest import PROJECT_ROOT

    binance = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.binance_server", "--origin", "2024-01-26T00:00:00Z",
         "--speed", "20000", "--candles-csv", str(shared_data_dir / "BTCUSDT-1h.csv")],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes = [binance]
    try:
        url = binance.stdout.readline().split()[1]
        if module == "tests.fakes.fng_server":
            fng = subprocess.Popen(
                [sys.executable, "-m", module, "--binance-url", url,
                 "--sentiment-csv", str(shared_data_dir / "fear_greed_index.csv")],
                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            processes.append(fng)
            fng_url = fng.stdout.readline().split()[1]
            with urllib.request.urlopen(f"{fng_url}/fng/?limit=2", timeout=10) as answer:
                newest = json.load(answer)["data"][0]
            # Served up to the exchange's clock (2024-01-26), not the stored series' end.
            assert newest["timestamp"] == str(1_706_227_200)
        else:
            with urllib.request.urlopen(f"{url}/api/v3/time", timeout=10) as answer:
                server_ms = json.load(answer)["serverTime"]
            assert ORIGIN <= server_ms <= ORIGIN + 2 * HOUR - 2, "paced: waits for a reader"
            query = f"symbol=BTCUSDT&interval=1h&startTime={ORIGIN - HOUR}&limit=2"
            with urllib.request.urlopen(f"{url}/api/v3/klines?{query}", timeout=10) as answer:
                rows = json.load(answer)
            assert rows[0][0] == ORIGIN - HOUR and float(rows[0][4]) > 1000, "stored candles"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    assert [p.returncode for p in processes] == [0] * len(processes)


def test_a_restarted_feed_rereads_the_history_of_its_last_bar_first(paced) -> None:
    server, monotonic = paced
    last = pd.Timestamp(ORIGIN - HOUR, unit="ms", tz="UTC")
    feed = BinanceKlineFeed(
        make_binance_client(base_url=server.url),
        symbol="BTCUSDT", interval="1h", interval_delta=pd.Timedelta(hours=1),
        last_processed=last, history=HISTORY, stop_event=threading.Event(),
        clock=ExchangeClock(make_binance_client(base_url=server.url)), rewarm=True,
    )  # fmt: skip
    monotonic.now += 1.5
    items = feed.fetch_closed()
    opens = [epoch_ns(i.candle.open_time) // 10**6 for i in items if i.candle is not None]
    history = [ORIGIN - (HISTORY - k) * HOUR for k in range(HISTORY)]
    assert opens == [*history, ORIGIN], "the last bar's history, then the new bar"
    assert [i.tradable for i in items] == [False] * HISTORY + [True]
    monotonic.now += 1.0
    assert feed.fetch_closed() == [], "history is re-read once, not every round"


@pytest.mark.parametrize("ban", [banned(retry_after=1), rate_limited(retry_after=1)])
def test_retry_after_is_honoured_with_heartbeats_while_waiting(paced, monkeypatch, ban) -> None:
    """Retrying inside a ban extends it: the feed waits the exchange's Retry-After (not its
    own shorter backoff), heartbeating with the error meanwhile."""
    import time

    from engine.live import feeds

    monkeypatch.setattr(feeds, "HEARTBEAT_SECONDS", 0.05)
    server, monotonic = paced
    monotonic.now += 1.5
    feed = _feed(server, ExchangeClock(make_binance_client(base_url=server.url)))
    server.inject(ban)
    started = time.monotonic()
    heartbeats = []
    for item in feed:
        if item.candle is not None:
            break
        heartbeats.append(item)
    waited = time.monotonic() - started
    assert waited >= 1.0, f"retried after {waited:.2f} s, inside the exchange's Retry-After"
    assert len(heartbeats) >= 5 and all("APIError(code=-1003)" in h.error for h in heartbeats)
    assert len(server.requests_to("/api/v3/time")) == 2, "one refused attempt, one retry"


def test_a_restarted_fake_exchange_resumes_its_clock_from_its_state_file(tmp_path) -> None:
    """Started afresh at its origin, a fake would be behind its readers, and pace them for
    ever at a bar they already have: with --state-file it goes on where it was."""
    import json
    import subprocess
    import sys
    import urllib.request

    from tests.engine.live.conftest import PROJECT_ROOT

    state = tmp_path / "clock.json"
    command = [
        sys.executable, "-m", "tests.fakes.binance_server", "--origin", "2024-01-26T00:00:00Z",
        "--speed", "3600000", "--state-file", str(state),
    ]  # fmt: skip

    def run_once(start_ms: int) -> int:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        try:
            url = process.stdout.readline().split()[1]
            query = f"symbol=BTCUSDT&interval=1h&startTime={start_ms}&limit=5"
            with urllib.request.urlopen(f"{url}/api/v3/klines?{query}", timeout=10):
                pass  # a reader that has every bar before start_ms
            with urllib.request.urlopen(f"{url}/api/v3/time", timeout=10) as answer:
                return int(json.load(answer)["serverTime"])
        finally:
            process.terminate()
            process.wait(timeout=30)

    first = run_once(ORIGIN + HOUR)
    assert json.loads(state.read_text())["wanted_ms"] == ORIGIN + HOUR
    again = run_once(ORIGIN + 2 * HOUR)
    assert again >= first and json.loads(state.read_text())["wanted_ms"] == ORIGIN + 2 * HOUR
