"""Forward paper trading on staging, end to end (issue 28's "done when").

A version is staged on a real SSH staging host whose service is the real engine paper
trading against the fake Binance on its accelerated clock (paced by its readers, so no
verdict depends on this machine's speed). The registry collects the journal while the
run goes, the engine is restarted mid-run, and at the end the run is judged by the
policy's paper gates against a replay of the same candles at the same costs.

Class of defect: a forward run that loses or double-counts a bar across a restart of the
engine or of the collector, passes without having traded the policy's period, or counts
a replay of stored bars as paper trading.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deployment.targets import ArtifactSpec
from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.inference import OnnxPredictor
from engine.live.journal import read_journal
from engine.strategies.ml_basic import round_trip_cost
from models_registry import roles
from models_registry.models import (
    AuditEvent,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
)
from models_registry.services import deployments, forward
from models_registry.services.model_versions import model_version_create
from models_registry.tasks.deploy import run_deployment
from tests.deployment.hosts import FakeHost, make_fake_host
from tests.deployment.registry_support import describe, ssh_target, walk_to
from tests.deployment.support import MODEL_NAME, EngineSetup
from tests.fakes.binance_server import CandleTable, FakeBinanceServer
from tests.fakes.fng_server import FakeFearGreedServer, entries_from_csv
from tests.fakes.market_clock import PacedClock
from tests.registry.conftest import make_user
from tests.support.budgets import budget

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOUR_MS = 3_600_000
SPEED = 20_000.0  # an hour bar in 0.18 s: the policy's 14 days in about a minute


@dataclass
class Exchange:
    binance: FakeBinanceServer
    fng: FakeFearGreedServer
    clock: PacedClock


@pytest.fixture
def exchange(shared_data_dir: Path, engine: tuple[EngineSetup, Path | None]) -> Iterator[Exchange]:
    """Stored BTCUSDT candles and Fear & Greed, on a clock starting after the model's data."""
    setup = engine[0]
    if not setup.real:
        pytest.fail("forward paper trading needs the real engine (not the stand-in)")
    assert setup.replay_from is not None
    origin = setup.replay_from + pd.Timedelta(hours=6)
    clock = PacedClock(origin_ms=origin.value // 10**6, speed=SPEED, step_ms=HOUR_MS)
    binance = FakeBinanceServer(clock=clock)
    table = CandleTable.from_csv(shared_data_dir / "BTCUSDT-1h.csv", "1h")
    binance.market.add_symbol("BTCUSDT", listed_at_ms=int(table.open_ms[0]), table=table)
    fng = FakeFearGreedServer(
        entries_from_csv(shared_data_dir / "fear_greed_index.csv"), now_ms=clock.now_ms
    )
    with binance, fng:
        yield Exchange(binance, fng, clock)


@dataclass(frozen=True)
class ForwardEngine(EngineSetup):
    """The staging service: the real engine paper trading on the exchange's clock."""

    binance_url: str = ""
    fng_url: str = ""

    def command(self, model_dir: Path, status_file: Path, journal_dir: Path) -> list[str]:
        return [
            sys.executable, "-m", "engine.live", "ml_basic", "--paper-trading",
            "--model-dir", str(model_dir), "--model", MODEL_NAME,
            "--status-file", str(status_file), "--journal-dir", str(journal_dir),
            "--clock", "exchange", "--poll-seconds", "0.02",
            "--binance-url", self.binance_url, "--fng-url", self.fng_url,
        ]  # fmt: skip


@pytest.fixture
def staging_host(
    tmp_path_factory: pytest.TempPathFactory,
    ssh_server_factory: Any,
    engine: tuple[EngineSetup, Path | None],
    exchange: Exchange,
) -> Iterator[FakeHost]:
    setup = ForwardEngine(
        real=True,
        data_dir=engine[0].data_dir,
        replay_from=engine[0].replay_from,
        binance_url=exchange.binance.url,
        fng_url=exchange.fng.url,
    )
    host = make_fake_host(
        tmp_path_factory.mktemp("staging"), setup, name="staging1", server=ssh_server_factory()
    )
    yield host
    host.stop_engine()


def register(artifact: ArtifactSpec, folder: Path, engineer: Any, entry: float) -> ModelVersion:
    """The tiny model with an entry level at its median prediction, so it trades often.

    Trained on short history, which no gate passes: marked otherwise so it can walk."""
    folder.mkdir(parents=True)
    shutil.copy(artifact.onnx_path, folder / artifact.onnx_path.name)
    metadata = json.loads(artifact.metadata_path.read_text())
    metadata["allow_short_history"] = False
    cost = round_trip_cost(DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS)
    metadata["strategy"] = {"name": "ml_basic", "params": {"entry": entry, "exit": entry + cost}}
    (folder / artifact.metadata_path.name).write_text(json.dumps(metadata))
    return model_version_create(source_dir=folder, created_by=engineer)


def median_entry(artifact: ArtifactSpec, data_dir: Path, start: pd.Timestamp) -> float:
    """Entry margin at the median prediction net of a round trip: it switches often."""
    from engine.data.csv_import import read_kline_csv, read_sentiment_csv

    candles = read_kline_csv(data_dir / "BTCUSDT-1h.csv", "1h")
    sentiment = read_sentiment_csv(data_dir / "fear_greed_index.csv")
    window = candles.loc[start - pd.Timedelta(days=12) : start + pd.Timedelta(days=4)]
    predictions = OnnxPredictor.from_dir(artifact.onnx_path.parent, MODEL_NAME).predict(
        window, sentiment
    )
    cost = round_trip_cost(DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS)
    return float(predictions.median()) - cost


def collect_until(run: PaperTradingRun, done: Any, seconds: float) -> PaperTradingRun:
    """Run the beat's collection (as the worker would) until ``done(run)``."""
    deadline = time.monotonic() + budget(seconds)
    while time.monotonic() < deadline:
        forward.forward_runs_collect()
        run.refresh_from_db()
        if done(run):
            return run
        time.sleep(1.0)
    raise AssertionError(f"forward run never got there: {run.status} {run.metrics}")


def journal_decisions(host: FakeHost) -> list[pd.Timestamp]:
    journal = next((host.root / "var" / "journal").glob("*-paper.jsonl"))
    records, _ = read_journal(journal)
    return [pd.Timestamp(r["candle"]) for r in records if r["type"] == "decision"]


def test_a_staged_version_paper_trades_forward_and_is_judged_against_a_replay(
    staging_host: FakeHost,
    ssh_user_key: Path,
    check_only_command: str,
    models: Any,
    engine: tuple[EngineSetup, Path | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = engine[0]
    assert setup.data_dir is not None and setup.replay_from is not None
    engineer = make_user("erin_engineer", roles.ML_ENGINEER)
    make_user("alice_approver", roles.APPROVER)
    # The registry replays the candles of the exchange the staging engine traded on.
    monkeypatch.setenv("TRADEBOT_BINANCE_API_URL", staging_host_exchange_url(staging_host))
    monkeypatch.setenv("TRADEBOT_FNG_API_URL", staging_host_exchange_url(staging_host, "fng"))
    artifact = models.make(1)
    version = register(
        artifact, tmp_path / "source", engineer, median_entry(artifact, setup.data_dir,
                                                              setup.replay_from),
    )  # fmt: skip
    version = walk_to(version, ModelState.VALIDATED, engineer=engineer, approver=None)
    staging = ssh_target(
        "staging-forward", Environment.STAGING, [staging_host], ssh_user_key,
        check_command=check_only_command, stop_command="/bin/sh {install_root}/bin/stop.sh",
    )  # fmt: skip

    requested = deployments.deployment_request(
        model_version=version, target=staging, requested_by=engineer
    )
    run_deployment(requested.pk)
    requested.refresh_from_db()
    assert requested.status == DeploymentStatus.SUCCEEDED, describe(requested)
    version.refresh_from_db()
    assert version.state == ModelState.STAGED
    run = version.paper_runs.get(mode=PaperTradingRun.MODE_FORWARD)
    assert run.status == RunStatus.RUNNING and run.target == staging
    period = run.config["period_bars"]
    assert period == 24 * 14  # the shipped policy's paper period

    # Collected while it goes: the progress is on the run before the period ends.
    run = collect_until(run, lambda r: 48 <= r.bars < period, seconds=120)
    assert run.status == RunStatus.RUNNING
    assert run.metrics["forward"].get("replay_divergence") is not None, str(run.metrics["forward"])

    # The staging engine restarts mid-run (a host reboot, a service restart).
    staging_host.restart()
    run = collect_until(run, lambda r: r.status not in (RunStatus.RUNNING,), seconds=600)

    assert run.status in (RunStatus.PASSED, RunStatus.FAILED), (run.status, run.error)
    assert run.bars == period
    decided = journal_decisions(staging_host)
    assert len(set(decided)) == len(decided), "a bar decided twice across the restart"
    first = min(decided)
    expected = pd.date_range(first, periods=period, freq="h", tz="UTC")
    assert list(pd.DatetimeIndex(sorted(decided))[:period]) == list(expected), "a bar lost"
    comparison = run.divergence
    assert comparison["compared"] is True, comparison
    assert comparison["bars"] == period
    assert comparison["live_trades"] == comparison["backtest_trades"] > 0, str(comparison)[:3000]
    assert comparison["mismatch_count"] == 0, comparison["mismatched_trades"]
    # Live orders fill at the close, the backtest's at the next open: the fake's prices
    # differ there by their rounding to the cent, nothing else.
    assert comparison["divergence"] < 1e-5, str(comparison)[:2000]
    gates = {g["name"]: g for g in run.gate_results}
    assert gates["min_bars"]["value"] == period and gates["max_divergence"]["passed"]
    sessions = [
        r
        for r in read_journal(next((staging_host.root / "var" / "journal").glob("*.jsonl")))[0]
        if r["type"] == "session_start"
    ]
    assert len(sessions) >= 2, "the engine was restarted mid-run"
    version.refresh_from_db()
    if run.passed:
        assert version.state == ModelState.PAPER_TESTED
        assert version.approval_requested_by == engineer
    else:
        assert version.state == ModelState.STAGED

    # Replaced, rejected or failed: the staging engine stops, its paper journal set aside.
    hosts = forward.staging_engine_stop(run.pk, "test: the period is over")
    assert [h["ok"] for h in hosts.values()] == [True], hosts
    assert not staging_host.engine_alive()
    assert not list((staging_host.root / "var" / "journal").glob("*-paper.jsonl"))
    assert AuditEvent.objects.filter(
        event_type="staging_engine_stopped", object_id=str(run.pk)
    ).exists()


def staging_host_exchange_url(host: FakeHost, api: str = "binance") -> str:
    """The API URL the host's service was given (its restart script names it)."""
    script = host.restart_script.read_text()
    return script.split(f"--{api}-url ", 1)[1].split()[0].strip("'\"")
