"""Forward paper runs: what the collector does with a journal it cannot read, a host without
market data, a rejected or replaced version, and bars seen twice (services/forward.py).

The hosts are stood in for at the one seam that reaches them (the journal and status
reads); tests/deployment/test_forward_paper_run.py runs the whole thing on a real SSH
host with the real engine.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models_registry import dispatch, selectors
from models_registry.models import (
    AuditEvent,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
)
from models_registry.services import forward, jobs, lifecycle
from tests.registry.conftest import finished_deployment

pytestmark = pytest.mark.django_db

SHA = "a" * 64


def started_run(version_factory: Any, engineer: Any) -> PaperTradingRun:
    version = version_factory(ModelState.STAGED)
    deployment = selectors.successful_staging_deployment(version)
    assert deployment is not None
    return forward.forward_run_start(deployment=deployment)


def journal(version: ModelVersion, bars: int, *, start: str = "2024-03-01") -> list[dict]:
    first = pd.Timestamp(start, tz="UTC")
    records: list[dict[str, Any]] = [
        {"type": "session_start", "model_sha256": version.onnx_sha256, "fills_at": "close"}
    ]
    for number in range(bars):
        candle = (first + pd.Timedelta(hours=number)).isoformat()
        records.append({"type": "decision", "candle": candle, "prediction": 0.1, "target": 0.0})
    return records


def events(run: PaperTradingRun, event_type: str) -> int:
    return AuditEvent.objects.filter(
        event_type=event_type, object_type="PaperTradingRun", object_id=str(run.pk)
    ).count()


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the staging hosts say: their journals, and whether market data flows."""
    said: dict[str, Any] = {"journals": [], "market": None, "stopped": []}
    monkeypatch.setattr(forward, "collect_journal", lambda target: said["journals"])
    monkeypatch.setattr(forward, "_market_data_reason", lambda run: said["market"])
    # Figures need the exchange's candles: not what these tests are about.
    monkeypatch.setattr(forward, "evaluate", lambda run, progress: forward.Evaluation(error="x"))

    def send(name: str, *, args: Any = (), **_: Any) -> None:
        said["stopped"].append((name, args))

    monkeypatch.setattr(dispatch, "task_send", send)
    return said


def test_a_staging_deploy_opens_a_running_forward_run_at_the_policy_s_period(
    version_factory: Any, engineer: Any
) -> None:
    run = started_run(version_factory, engineer)
    assert run.status == RunStatus.RUNNING and run.mode == PaperTradingRun.MODE_FORWARD
    assert run.config["period_bars"] == 24 * 14
    assert run.config["model_sha256"] == run.model_version.onnx_sha256
    assert run.policy_hash and events(run, "paper_run_started") == 1


def test_an_unreadable_journal_is_retried_then_needs_attention_naming_host_and_reason(
    version_factory: Any, engineer: Any, hosts: dict[str, Any]
) -> None:
    run = started_run(version_factory, engineer)
    hosts["journals"] = [{"target": "t", "host": "stage-1", "file": None, "error": "refused"}]
    for _ in range(forward.READ_RETRIES - 1):
        run = forward.forward_run_collect(run)
        assert run.status == RunStatus.RUNNING
    run = forward.forward_run_collect(run)
    assert run.status == RunStatus.NEEDS_ATTENTION
    assert "stage-1: refused" in run.error and "unreadable" in run.error
    assert events(run, "paper_run_needs_attention") == 1
    # Readable again: it resumes, counting what the journal holds.
    hosts["journals"] = [{"host": "stage-1", "records": journal(run.model_version, 30)}]
    run = forward.forward_run_collect(run)
    assert run.status == RunStatus.RUNNING and run.bars == 30 and run.error == ""
    assert events(run, "paper_run_resumed") == 1


def test_a_host_without_market_data_never_passes_quietly(
    version_factory: Any, engineer: Any, hosts: dict[str, Any]
) -> None:
    run = started_run(version_factory, engineer)
    hosts["journals"] = [{"host": "stage-1", "records": journal(run.model_version, 400)}]
    hosts["market"] = "staging host stage-1 cannot reach market data: no candle for 2 h"
    run = forward.forward_run_collect(run)
    assert run.status == RunStatus.NEEDS_ATTENTION
    assert "cannot reach market data" in run.error and run.passed is None
    assert run.model_version.state == ModelState.STAGED


def test_a_period_whose_candles_cannot_be_fetched_needs_attention_not_a_verdict(
    version_factory: Any, engineer: Any, hosts: dict[str, Any]
) -> None:
    run = started_run(version_factory, engineer)
    hosts["journals"] = [{"host": "stage-1", "records": journal(run.model_version, 24 * 14)}]
    run = forward.forward_run_collect(run)
    assert run.status == RunStatus.NEEDS_ATTENTION and run.passed is None


def test_a_rejected_version_ends_its_run_and_its_staging_engine_is_stopped(
    version_factory: Any, engineer: Any, approver: Any, hosts: dict[str, Any]
) -> None:
    run = started_run(version_factory, engineer)
    lifecycle.model_version_reject(
        model_version=run.model_version, rejected_by=approver, comment="not this one"
    )
    run = forward.forward_run_collect(run)
    assert run.status == RunStatus.ERROR and "rejected" in run.error
    assert hosts["stopped"] == [(dispatch.STOP_STAGING_ENGINE, (run.pk, run.error))]


def test_a_newer_staging_deploy_on_the_target_ends_the_running_run(
    version_factory: Any, engineer: Any, staging_target: Any
) -> None:
    first = started_run(version_factory, engineer)
    newer = version_factory(ModelState.VALIDATED)
    replacing = finished_deployment(newer, first.target, engineer)
    second = forward.forward_run_start(deployment=replacing)
    first.refresh_from_db()
    assert first.status == RunStatus.ERROR and f"deployment #{replacing.pk}" in first.error
    assert second.status == RunStatus.RUNNING


def test_a_forward_run_has_no_worker_lease_to_outlive(version_factory: Any, engineer: Any) -> None:
    run = started_run(version_factory, engineer)
    ended = jobs.runs_reconcile(running_after=pd.Timedelta(0).to_pytimedelta())
    assert run.pk not in [r.pk for r in ended]
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_replay_never_marks_a_version_paper_tested(version_factory: Any, engineer: Any) -> None:
    from tests.registry.conftest import passing_paper_run

    version = version_factory(ModelState.STAGED)
    with pytest.raises(lifecycle.GateFailed, match="replay of stored bars"):
        lifecycle.model_version_mark_paper_tested(
            model_version=version, paper_run=passing_paper_run(version), actor=engineer
        )


# --- bars are counted once, whatever the journal repeats ---------------------------------


class Version:
    onnx_sha256 = SHA


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    decided=st.lists(st.integers(min_value=0, max_value=60), max_size=120),
    period=st.integers(min_value=1, max_value=40),
    other_model=st.lists(st.integers(min_value=0, max_value=60), max_size=20),
)
def test_the_period_counts_each_bar_once_and_only_this_file_s(
    decided: list[int], period: int, other_model: list[int]
) -> None:
    """Restarts repeat decisions, warm-up bars have no prediction, another model's
    session shares the file: the run's bars are this file's distinct decided bars, its
    first ``period`` ones."""
    first = pd.Timestamp("2024-03-01", tz="UTC")

    def decision(hour: int, prediction: float | None = 0.1) -> dict[str, Any]:
        candle = (first + pd.Timedelta(hours=hour)).isoformat()
        return {"type": "decision", "candle": candle, "prediction": prediction}

    records: list[dict[str, Any]] = [{"type": "session_start", "model_sha256": "b" * 64}]
    records += [decision(h) for h in other_model]
    records.append({"type": "session_start", "model_sha256": SHA})
    records += [decision(h, None) for h in range(3)]  # the model warming up
    ordered = sorted(decided)  # a journal only moves forward, repeating after a restart
    records += [decision(h) for h in ordered]
    progress = forward.journal_progress(Version(), [{"records": records}], period)  # type: ignore[arg-type]
    distinct = sorted(set(ordered))
    expected = [first + pd.Timedelta(hours=h) for h in distinct[:period]]
    assert progress.bars == expected
