"""Live against backtest: the engine's journal, collected from a target, compared trade by trade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.data import read_candles, read_sentiment
from engine.live.journal import Journal, journal_path, read_journal
from engine.live.paper import run_paper_replay
from models_registry.models import (
    DeploymentTarget,
    HealthStatus,
    ModelVersion,
    RunStatus,
)
from models_registry.services import monitoring
from models_registry.services.model_versions import version_dir
from models_registry.services.monitoring.live import session_costs_differences
from tests.monitoring.conftest import BASELINE_HOURS, out_of_sample_start

PLANTED_PRICE_FACTOR = 1.03
ENVELOPE = ("seq", "at", "type", "sha")


def engine_records(version: ModelVersion, store: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """What the engine journals when it trades the bars after the baseline, replayed."""
    candles = read_candles(store, "BTCUSDT", "1h").frame
    first = out_of_sample_start(version) + pd.Timedelta(hours=BASELINE_HOURS - 48)
    replay = run_paper_replay(
        version_dir(version),
        candles.loc[first:],
        read_sentiment(store).frame,
        journal_dir=tmp_path / "replay",
    )
    records, _ = read_journal(replay.journal)
    return records


def write_host_journal(
    folder: Path, version: ModelVersion, records: list[dict[str, Any]], *, plant_fill: int = 0
) -> tuple[Path, dict[str, Any] | None]:
    """The journal as the service writes it: a session start, then the engine's records.

    ``plant_fill`` (1-based) moves that fill's price by 3%: a trade the backtest cannot explain.
    """
    path = journal_path(folder, symbol=version.symbol, mode="live")
    journal = Journal(path)
    journal.append(
        "session_start", mode="live", model_name=version.name, model_version=version.version,
        model_sha256=version.onnx_sha256, pid=4242,
    )  # fmt: skip
    planted = None
    fills = 0
    for record in records:
        payload = {k: v for k, v in record.items() if k not in ENVELOPE}
        if record["type"] == "fill":
            fills += 1
            if fills == plant_fill:
                payload["price"] = payload["price"] * PLANTED_PRICE_FACTOR
                planted = payload
        journal.append(record["type"], **payload)
    journal.close()
    return path, planted


@pytest.mark.django_db
def test_the_engines_journal_matches_the_backtest_and_a_planted_trade_is_found(
    production_version: ModelVersion, store: Path, tmp_path: Path
) -> None:
    records = engine_records(production_version, store, tmp_path)
    fills = [r for r in records if r["type"] == "fill"]
    # ml_basic holds through its exit band, so one entry may be the whole replay (an open trade).
    assert len(fills) >= 1, "the tiny model must trade in the replay for this test to mean much"
    candles = read_candles(store, "BTCUSDT", "1h").frame
    sentiment = read_sentiment(store).frame

    clean_path, _ = write_host_journal(tmp_path / "clean", production_version, records)
    clean = monitoring.compare_live_with_backtest(
        production_version, read_journal(clean_path)[0], candles, sentiment=sentiment
    )
    assert clean["compared"], clean
    assert clean["live_trades"] == clean["backtest_trades"] > 0
    assert clean["divergence"] <= 0.001, clean
    assert clean["mismatched_trades"] == []

    planted_path, planted = write_host_journal(
        tmp_path / "planted", production_version, records, plant_fill=1
    )
    found = monitoring.compare_live_with_backtest(
        production_version, read_journal(planted_path)[0], candles, sentiment=sentiment
    )
    assert planted is not None
    assert found["divergence"] > 0.01
    assert found["max_price_divergence"] == pytest.approx(PLANTED_PRICE_FACTOR - 1, rel=0.05)
    assert found["mismatched_trades"][0]["trade"] == 1


@pytest.mark.django_db
def test_another_models_sessions_are_not_compared(
    production_version: ModelVersion, store: Path, tmp_path: Path
) -> None:
    records = engine_records(production_version, store, tmp_path)
    path, _ = write_host_journal(tmp_path / "j", production_version, records)
    other = ModelVersion(onnx_sha256="f" * 64, name=production_version.name, version=99)
    result = monitoring.compare_live_with_backtest(
        other, read_journal(path)[0], read_candles(store, "BTCUSDT", "1h").frame
    )
    assert result == {"compared": False, "reason": f"no decisions of {other} in the journal"}


@pytest.mark.django_db
def test_scheduled_run_collects_the_host_journal_and_flags_a_divergence(
    production_version: ModelVersion,
    production_target: DeploymentTarget,
    store: Path,
    tmp_path: Path,
) -> None:
    records = engine_records(production_version, store, tmp_path)
    journals = Path(production_target.install_root) / "var" / "journal"
    write_host_journal(journals, production_version, records, plant_fill=1)
    (journals / "btcusdt-live.20240101T000000Z.jsonl").write_text("an archive, not read\n")

    collected = monitoring.collect_journal(production_target)
    assert [(j["target"], j["file"]) for j in collected] == [
        ("production-local", "btcusdt-live.jsonl")
    ]
    assert collected[0]["records"][0]["type"] == "session_start"

    run = monitoring.scheduled_validation_run(model_version=production_version, slot="2024-02-10")

    assert run is not None and run.status == RunStatus.FAILED
    assert [g["name"] for g in run.gate_results if not g["passed"]] == ["drift_live_divergence"]
    live = run.drift["live"]
    assert live["targets"] == ["production-local"]
    assert live["comparisons"][0]["divergence"] > 0.01
    version = ModelVersion.objects.get(pk=production_version.pk)
    assert version.health == HealthStatus.DEGRADED


@pytest.mark.django_db
def test_an_unreadable_host_journal_is_an_entry_naming_why(
    production_target: DeploymentTarget,
) -> None:
    journals = Path(production_target.install_root) / "var" / "journal"
    journals.mkdir(parents=True, exist_ok=True)
    (journals / "btcusdt-live.jsonl").write_text("not json\n")

    collected = monitoring.collect_journal(production_target)

    assert [(j["target"], j["file"]) for j in collected] == [
        ("production-local", "btcusdt-live.jsonl")
    ]
    assert "records" not in collected[0]
    assert "line 1: invalid JSON" in collected[0]["error"]


def test_sessions_at_other_costs_than_the_policys_are_named() -> None:
    from models_registry.policy import CostPolicy

    policy = CostPolicy(fee_bps=10.0, slippage_bps=5.0)
    at_policy = {"fee_bps": 10.0, "slippage_bps": 5.0, "source": "policy"}
    records = [
        {"type": "session_start", "at": "t1", "costs": at_policy},
        {"type": "fill", "fee": 1.0},
        {"type": "session_start", "at": "t2", "costs": {**at_policy, "fee_bps": 0.0}},
        {"type": "session_start", "at": "t3"},
    ]
    assert session_costs_differences(records, policy) == [
        "session started t2: fee_bps 0.0, the policy's is 10",
        "session started t3: the engine did not record its costs",
    ]
