"""A staging host over SSH paper-trades forward against the fake exchange, then is stopped.

The real engine as the host's service (`--clock exchange`), the fake Binance and Fear &
Greed as their own processes on the accelerated, paced clock; the journal is fetched over
SSH while it runs (deployment.journals), and deployment.service.engine_stop ends it cleanly:
SIGTERM, a `session_stop` record, the status `stopped`, the process gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from deployment.connection import open_connection
from deployment.journals import journals_fetch
from deployment.service import engine_stop
from engine.live.journal import read_journal
from tests.deployment.hosts import make_fake_host
from tests.fakes.processes import exchange_processes
from tests.support.budgets import budget

pytestmark = pytest.mark.slow


def _decisions(journal: Path) -> int:
    return sum(1 for r in read_journal(journal, running=True)[0] if r["type"] == "decision")


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + budget(seconds)
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_staging_host_trades_forward_and_stops_cleanly(
    engine, models, ssh_server_factory, make_target, tmp_path_factory, shared_data_dir
):
    setup, _ = engine
    if not setup.real:
        pytest.skip("forward paper trading needs the real engine (stand-in asked for)")
    assert setup.replay_from is not None
    origin = (setup.replay_from + pd.Timedelta(hours=6)).isoformat()
    version = models.make(1)
    with exchange_processes(
        origin=origin,
        candles_csv=shared_data_dir / "BTCUSDT-1h.csv",
        sentiment_csv=shared_data_dir / "fear_greed_index.csv",
    ) as urls:
        host = make_fake_host(
            tmp_path_factory.mktemp("staging"),
            setup.forward(urls.binance, urls.fng),
            name="staging1",
            server=ssh_server_factory(),
        )
        spec = make_target([host], environment="staging")
        host.install(version)
        journal = host.root / "var" / "journal" / "btcusdt-paper.jsonl"
        try:
            connection = open_connection(spec, host.spec)
            try:
                started = connection.run(
                    spec.layout_for(host.spec).restart_command, timeout=budget(10)
                )
            finally:
                connection.close()
            assert started.ok, started.describe()
            _wait_for(lambda: _decisions(journal) >= 24, 60, "a day of bars on the host")

            into = tmp_path_factory.mktemp("fetched")
            fetched = journals_fetch(spec, into)
            assert [(f.host, f.file, f.error) for f in fetched] == [
                ("staging1", "btcusdt-paper.jsonl", None)
            ]
            assert fetched[0].local is not None
            records = read_journal(fetched[0].local, running=True)[0]  # copied mid-run
            assert records[0]["type"] == "session_start"
            assert records[0]["model_sha256"] == version.onnx_sha256
            assert sum(r["type"] == "decision" for r in records) >= 24
            pid = host.engine_pid()
            assert pid is not None

            results = engine_stop(spec, archive_journals=True)  # the version is replaced

            assert [(r.host, r.ok, r.detail) for r in results] == [("staging1", True, "stopped")]
            (archive,) = results[0].archived
            assert archive.startswith("btcusdt-paper.") and not journal.exists()
            journal = journal.with_name(archive)
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
            final = read_journal(journal)[0]
            assert final[-1]["type"] == "session_stop" and final[-1]["reason"] == "signal"
            assert host.status()["state"] == "stopped"
        finally:
            pid = host.engine_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
