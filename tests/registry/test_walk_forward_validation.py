"""Policy validation on walk-forward evidence re-fitted per fold, over real Celery workers (#28).

A policy with ``refit_folds`` fans a validation out: each fold's model is trained (training
worker) on the bars before the fold and trades the fold (backtest worker); the chord's join
judges the folds joined and records the run, one trial per fold model and the fold models
with the report. A fold that fails ends the run as an error naming it, never a pass.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_given
from hypothesis import strategies as st

from models_registry.models import AuditEvent, ModelTrial, ModelVersion, RunStatus, ValidationRun
from models_registry.policy_defaults import DEFAULT_VALIDATION_POLICY
from models_registry.services import jobs, runs, walk_forward
from models_registry.services.validation import ValidationOptions, validation_run_create_inline
from tests.registry.conftest import requires_postgresql
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    media,
    model_dir,
    store,
    version,
)
from tests.support.policy import adopt_settings_policy, policy_set

REFIT_POLICY = {"days": 10, "refit_folds": 2, "fold_days": 5}


def running_run(version: ModelVersion) -> ValidationRun:  # noqa: F811
    return validation_run_create_inline(
        model_version=version, requested_by=None, options=ValidationOptions()
    )


def fold_result(fold: Any, error: str | None) -> dict[str, Any]:
    return {"fold": fold.to_dict(), "error": error}


@pytest.mark.django_db
@pytest.mark.parametrize("failing", [[1], [2], [1, 2]])
def test_a_failed_fold_ends_the_run_as_an_error_naming_it_never_a_pass(
    failing: list[int],
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    settings.TRADEBOT_GATES = GENEROUS_GATES
    plan = walk_forward.refit_plan(version)
    run = running_run(version)
    results = [
        fold_result(f, "training failed: boom" if f.number in failing else None) for f in plan
    ]

    finished = walk_forward.walk_forward_join(results, run.pk)

    assert finished.status == RunStatus.ERROR and finished.passed is False
    for fold in plan:
        assert (fold.name in finished.error) == (fold.number in failing)
    assert f"failed in {len(failing)} of 2 folds" in finished.error
    assert not ModelTrial.objects.filter(detail__validation_run=run.pk).exists()
    # a late join (a redelivery) changes nothing
    again = walk_forward.walk_forward_join([fold_result(f, None) for f in plan], run.pk)
    assert again.status == RunStatus.ERROR


@pytest.mark.django_db
def test_the_plan_ends_at_the_policy_window_and_a_short_history_is_refused(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    plan = walk_forward.refit_plan(version)
    first_unseen = pd.Timestamp(version.first_unseen_at)
    assert plan[-1].stop == first_unseen + pd.Timedelta(days=10)
    assert [f.stop - f.start for f in plan] == [pd.Timedelta(days=5)] * 2
    horizon = version.metadata["horizon"]
    assert plan[0].start - plan[0].train_stop == pd.Timedelta(hours=2 * horizon)
    settings.TRADEBOT_VALIDATION_POLICY = {**REFIT_POLICY, "refit_folds": 40}
    adopt_settings_policy()  # settings only seed: the change goes through four eyes
    with pytest.raises(walk_forward.ValidationRefused, match="fold 1 of 40"):
        walk_forward.refit_plan(version)


@pytest.mark.django_db
def test_only_a_policy_request_is_refitted(version: ModelVersion, settings: Any) -> None:  # noqa: F811
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    run = running_run(version)
    assert walk_forward.refit_applies(run, ValidationOptions())
    assert not walk_forward.refit_applies(run, ValidationOptions(days=5))
    assert not walk_forward.refit_applies(run, ValidationOptions(fee_bps=0.0))
    assert not walk_forward.refit_applies(run, ValidationOptions(comparison=True))
    settings.TRADEBOT_VALIDATION_POLICY = {"days": 10}
    policy_set({"refit_folds": 0})  # settings only seed: the change goes through four eyes
    assert not walk_forward.refit_applies(run, ValidationOptions())


def wait_finished(run: ValidationRun, workers: list[Any], timeout: float = 600) -> ValidationRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return run
        for worker in workers:
            assert worker.poll() is None, Path(worker.log_path).read_text()[-4000:]
        time.sleep(1)
    logs = "\n".join(Path(w.log_path).read_text()[-3000:] for w in workers)
    raise AssertionError(f"run still {run.status} after {timeout}s:\n{logs}")


@requires_postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("keyed_and_anchored")
def test_folds_fan_out_over_a_training_and_a_backtest_worker_and_the_join_records_the_run(
    version: ModelVersion,  # noqa: F811
    media: Path,  # noqa: F811
    store: Path,  # noqa: F811
    settings: Any,
    celery_worker_factory: Any,
    keyed_and_anchored: dict[str, str],
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    settings.TRADEBOT_GATES = GENEROUS_GATES
    env = {
        "MEDIA_ROOT": str(media),
        "TRADEBOT_DATA_DIR": str(store),
        "TRADEBOT_GATES": json.dumps(GENEROUS_GATES),
        "TRADEBOT_VALIDATION_POLICY": json.dumps(REFIT_POLICY),
        **keyed_and_anchored,
    }
    trainer = celery_worker_factory(queues="training", env=env, name="trainer", ready=False)
    tester = celery_worker_factory(queues="backtest", env=env, name="tester", ready=False)
    trainer.wait_ready()
    tester.wait_ready()

    run = runs.validation_run_request(model_version=version, requested_by=None)
    run = wait_finished(run, [trainer, tester])

    assert run.status in (RunStatus.PASSED, RunStatus.FAILED), run.error
    plan = walk_forward.refit_plan(version)
    assert [f["number"] for f in run.metrics["refit_folds"]] == [1, 2]
    assert run.window_start == plan[0].start.to_pydatetime()
    assert run.metrics["bars"] == 2 * 5 * 24
    recorded = run.config[walk_forward.CONFIG_KEY]["folds"]
    assert [f["model"]["onnx_sha256"] for f in recorded] != [None, None]
    assert recorded[0]["model"]["onnx_sha256"] != recorded[1]["model"]["onnx_sha256"]
    assert run.config["trials"]["fold_models"] == 2
    assert run.metrics["trials"] == run.config["trials"]["trials"] >= 4  # train+run+2 folds
    assert run.metrics["power"]["trials"] == run.metrics["trials"]
    fold_trials = ModelTrial.objects.filter(detail__validation_run=run.pk)
    assert sorted(t.detail["fold"] for t in fold_trials) == [1, 2]
    assert ModelTrial.objects.filter(validation_run=run).count() == 1
    dispatched = AuditEvent.objects.filter(
        event_type=walk_forward.FOLDS_DISPATCHED, object_id=str(run.pk)
    )
    assert dispatched.count() == 1
    report = Path(settings.MEDIA_ROOT) / run.report_dir
    assert len(list((report / "folds").glob("fold-*/model/*.onnx"))) == 2
    assert "walk_forward_train_fold" in Path(trainer.log_path).read_text()
    assert "walk_forward_trade_fold" in Path(tester.log_path).read_text()
    assert "walk_forward_join" in Path(tester.log_path).read_text()
    assert "walk_forward_reproduce" in Path(trainer.log_path).read_text()
    assert run.config[walk_forward.CONFIG_KEY]["reproduction"]["status"] == "reproduces"
    assert jobs.runs_reconcile() == []
    assert not ValidationRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])


@pytest.mark.django_db
def test_a_fold_job_returns_its_error_instead_of_raising(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    plan = walk_forward.refit_plan(version)
    run = running_run(version)
    settings.ENVIRONMENT = "production"  # the guide: never train in production
    trained = walk_forward.fold_train(run.pk, plan[0].to_dict())
    assert trained["error"].startswith("training failed: TrainingRefused: refusing to train")
    assert walk_forward.fold_trade(trained, run.pk) == trained  # passed on to the join
    settings.ENVIRONMENT = "development"
    finished = walk_forward.walk_forward_join(
        [trained, walk_forward.fold_trade(fold_result(plan[1], None), run.pk)], run.pk
    )
    assert finished.status == RunStatus.ERROR
    assert plan[0].name in finished.error and "never train" not in finished.error[:10]
    late = walk_forward.fold_train(run.pk, plan[1].to_dict())
    assert late["error"] == "the validation run is no longer running"


@pytest.mark.django_db
def test_a_plan_that_cannot_be_made_ends_the_run_at_once(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = {**REFIT_POLICY, "refit_folds": 40}
    run = running_run(version)
    assert walk_forward.walk_forward_validation_start(run)
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR
    assert run.error.startswith("walk-forward evidence cannot be planned: fold 1 of 40")
    assert not AuditEvent.objects.filter(event_type=walk_forward.FOLDS_DISPATCHED).exists()


@pytest.mark.django_db
def test_a_refit_run_is_left_running_while_its_folds_may_run_then_reconciled(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    run = running_run(version)
    assert walk_forward.walk_forward_validation_start(run)
    assert walk_forward.walk_forward_validation_start(run)  # a redelivery dispatches nothing
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert len(run.config[walk_forward.CONFIG_KEY]["folds"]) == 2
    dispatched = AuditEvent.objects.filter(event_type=walk_forward.FOLDS_DISPATCHED)
    assert dispatched.count() == 1
    started = run.started_at
    lease = jobs.walk_forward_lease(2)
    assert lease > jobs.running_lease(ValidationRun)
    # Two folds' trainings and the reproduction re-fit may run one after another.
    from tradebot.queues import QUEUE_LIMITS, TRAINING

    assert lease > timedelta(seconds=3 * QUEUE_LIMITS[TRAINING].hard_seconds)
    assert jobs.runs_reconcile(now=started + jobs.running_lease(ValidationRun) * 2) == []
    assert jobs.runs_reconcile(now=started + lease - timedelta(seconds=5)) == []
    ended = jobs.runs_reconcile(now=started + lease + timedelta(seconds=5))
    assert [r.pk for r in ended] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and "reconciled" in run.error


# The shipped policy's folds, timed as shipped, on two workers (TRADEBOT_TIME_REFIT_WORKERS=1
# for the one-worker figure beside it).
TIMED_WORKERS = int(os.environ.get("TRADEBOT_TIME_REFIT_WORKERS", "2"))
TIMED_POLICY = {key: DEFAULT_VALIDATION_POLICY[key] for key in ("refit_folds", "fold_days")}


@requires_postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("keyed_and_anchored")
@pytest.mark.skipif(
    not os.environ.get("TRADEBOT_TIME_REFIT_VALIDATION"),
    reason="a measurement (minutes of CPU): set TRADEBOT_TIME_REFIT_VALIDATION=1",
)
def test_time_a_default_configured_version_refitted_on_two_workers(
    shared_data_dir: Path,
    tmp_path: Path,
    settings: Any,
    celery_worker_factory: Any,
    keyed_and_anchored: dict[str, str],
) -> None:
    """Prints how long the policy's refit validation of a default version takes; asserts only
    that it finished (no verdict depends on machine speed)."""
    from engine.data import ValidationPolicy, import_klines_csv, import_sentiment_csv
    from models_registry.services.training import training_run

    full_store = tmp_path / "store"
    import_klines_csv(
        shared_data_dir / "BTCUSDT-1h.csv", full_store, symbol="BTCUSDT", interval="1h",
        policy=ValidationPolicy(gaps="fill", max_fill=3),
    )  # fmt: skip
    import_sentiment_csv(shared_data_dir / "fear_greed_index.csv", full_store)
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRADEBOT_DATA_DIR = full_store
    settings.TRADEBOT_VALIDATION_POLICY = TIMED_POLICY
    began = time.monotonic()
    default_version = training_run(symbol="BTCUSDT", options={}, requested_by=None)
    trained = time.monotonic() - began
    env = {
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "TRADEBOT_DATA_DIR": str(full_store),
        "TRADEBOT_VALIDATION_POLICY": json.dumps(TIMED_POLICY),
        **keyed_and_anchored,
    }
    workers = [
        celery_worker_factory(queues="training,backtest", env=env, name=f"w{n}", ready=False)
        for n in range(1, TIMED_WORKERS + 1)
    ]
    for worker in workers:
        worker.wait_ready()
    began = time.monotonic()
    run = runs.validation_run_request(model_version=default_version, requested_by=None)
    run = wait_finished(run, workers, timeout=3600)
    took = time.monotonic() - began
    print(
        f"\ndefault version trained in {trained:.0f} s; refit validation "
        f"({TIMED_POLICY['refit_folds']} folds of {TIMED_POLICY['fold_days']} days, "
        f"{TIMED_WORKERS} worker(s)): "
        f"{took:.1f} s, {run.status}, DSR {run.metrics.get('dsr')}, "
        f"power: {(run.metrics.get('power') or {}).get('sentence')}"
    )
    assert run.status in (RunStatus.PASSED, RunStatus.FAILED), run.error


@pytest.mark.django_db
def test_the_backtest_command_states_the_power_of_its_evidence(
    version: ModelVersion,  # noqa: F811
) -> None:
    from tests.registry_commands.test_run_backtest import backtest

    text = backtest("ml_basic", "--days", "10", "--no-db", "--model", version.name)
    line = next(line for line in text.splitlines() if line.strip().startswith("power:"))
    assert "this evidence detects an annual Sharpe ratio of" in line
    assert "with 80% probability at N = 2 trials (240 bars" in line  # training + this run
    assert "in excess of buy-and-hold" in line


@pytest.mark.django_db
def test_under_a_refit_policy_an_asked_window_is_exploratory_and_moves_nothing(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    from tests.registry_commands.test_run_backtest import backtest

    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    text = backtest("ml_basic", "--days", "10", "--model", version.name)
    assert "EXPLORATORY run" in text and "2 re-fitted walk-forward folds" in text
    run = ValidationRun.objects.get(model_version=version)
    assert run.exploratory and run.status == RunStatus.PASSED
    version.refresh_from_db()
    assert version.state == "trained"


@pytest.mark.django_db
def test_the_backtest_command_validates_on_the_policys_folds_trained_here(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    """`run_backtest` (the guide's command) runs the same fold jobs and join in-process."""
    from tests.registry_commands.test_run_backtest import backtest

    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    summary = json.loads(backtest("ml_basic", "--model", version.name, "--json"))

    run = ValidationRun.objects.get(model_version=version)
    assert run.pk == summary["run_id"] and summary["passed"] is True
    assert run.status == RunStatus.PASSED and not run.exploratory, run.exploratory_reasons
    plan = walk_forward.refit_plan(version)
    assert [f["number"] for f in run.metrics["refit_folds"]] == [1, 2]
    assert run.window_start == plan[0].start.to_pydatetime()
    recorded = run.config[walk_forward.CONFIG_KEY]
    assert recorded["policy"]["hash"] == run.policy_hash != ""
    assert run.config["policy_in_force"]["hash"] == run.policy_hash
    assert sorted(t.detail["fold"] for t in ModelTrial.objects.filter(
        detail__validation_run=run.pk)) == [1, 2]  # fmt: skip
    assert (
        AuditEvent.objects.filter(
            event_type=walk_forward.FOLDS_DISPATCHED, object_id=str(run.pk)
        ).count()
        == 1
    )
    version.refresh_from_db()
    assert version.state == "validated"  # fold evidence before its own unseen bars counts
    # Its file is what its recorded configuration makes from its recorded training bars.
    reproduction = recorded["reproduction"]
    assert reproduction["status"] == "reproduces", reproduction
    assert reproduction["max_difference"] == 0.0 and reproduction["agreement"] == 1.0
    assert reproduction["bars"] == 5 * 24  # the last fold's bars


@pytest.mark.django_db
@pytest.mark.parametrize("interruption", [KeyboardInterrupt, MemoryError])
def test_an_interrupted_inline_refit_run_ends_as_an_error_and_leaves_no_fold_folder(
    interruption: type[BaseException],
    version: ModelVersion,  # noqa: F811
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    trained = []

    def train_then_stop(run_id: int, fold: dict[str, Any]) -> dict[str, Any]:
        if trained:
            raise interruption()
        trained.append(fold)
        return {"fold": fold, "error": "training failed: stand-in"}

    monkeypatch.setattr(walk_forward, "fold_train", train_then_stop)
    with pytest.raises(interruption):
        walk_forward.walk_forward_validation_inline(
            model_version=version, requested_by=None, options=ValidationOptions()
        )
    run = ValidationRun.objects.get(model_version=version)
    assert run.status == RunStatus.ERROR and interruption.__name__ in run.error
    assert not (walk_forward.report_root() / f".folds-{run.pk}").exists()


@pytest.mark.django_db
def test_a_plan_that_cannot_be_made_inline_leaves_no_run(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY = {**REFIT_POLICY, "refit_folds": 40}
    with pytest.raises(walk_forward.ValidationRefused, match="fold 1 of 40"):
        walk_forward.walk_forward_validation_inline(
            model_version=version, requested_by=None, options=ValidationOptions()
        )
    assert not ValidationRun.objects.filter(model_version=version).exists()


def folds_run_here(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> tuple[ValidationRun, list[Any], list[dict[str, Any]]]:
    """A running refit run whose folds were trained and traded here, not yet joined."""
    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    run = running_run(version)
    plan = walk_forward.refit_plan(version)
    assert walk_forward.fold_plan_record(run, plan)
    results = [
        walk_forward.fold_trade(walk_forward.fold_train(run.pk, f.to_dict()), run.pk) for f in plan
    ]
    return run, plan, results


@pytest.mark.django_db
def test_folds_judged_under_another_policy_than_they_were_planned_under_are_exploratory(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    run, _plan, results = folds_run_here(version, settings)
    policy_set({"fee_bps": 20.0}, label="dearer while the folds ran")
    settings.TRADEBOT_VALIDATION_POLICY = {**REFIT_POLICY, "fee_bps": 20.0}

    finished = walk_forward.walk_forward_join(results, run.pk)

    assert finished.exploratory
    assert any("the policy changed while the folds ran" in r for r in finished.exploratory_reasons)
    version.refresh_from_db()
    assert version.state == "trained"


@pytest.mark.django_db
def test_a_fold_model_that_saw_a_bar_of_its_fold_never_validates_the_version(
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    """A fold result claiming a model trained into its fold (a doctored or broken worker)."""
    run, plan, results = folds_run_here(version, settings)
    results[1]["model"]["data_end"] = plan[1].start.isoformat()

    finished = walk_forward.walk_forward_join(results, run.pk)

    assert finished.status == RunStatus.PASSED  # the figures pass; the evidence does not
    version.refresh_from_db()
    assert version.state == "trained"
    assert not AuditEvent.objects.filter(event_type="model_version_validated").exists()


FOLD_START = pd.Timestamp("2024-03-01T00:00:00Z")


@given(
    hours_before_start=st.integers(min_value=-500, max_value=500),
    oos_hours_before_stop=st.integers(min_value=-500, max_value=500),
    recorded=st.booleans(),
)
def test_fold_evidence_passes_the_out_of_sample_check_only_when_no_fold_model_saw_its_fold(
    hours_before_start: int, oos_hours_before_stop: int, recorded: bool
) -> None:
    from models_registry.services import lifecycle

    data_end = FOLD_START - pd.Timedelta(hours=hours_before_start)
    stop = FOLD_START + pd.Timedelta(days=5)
    fold = {"number": 1, "of": 1, "start": FOLD_START.isoformat(), "stop": stop.isoformat()}
    fold["model"] = {"data_end": data_end.isoformat()} if recorded else {}
    run = SimpleNamespace(pk=7, config={walk_forward.CONFIG_KEY: {"folds": [fold]}})
    oos = (stop - pd.Timedelta(hours=oos_hours_before_stop)).to_pydatetime()
    clean = recorded and data_end < FOLD_START and stop > oos
    try:
        lifecycle._refuse_refit_evidence_in_sample(run, oos)  # type: ignore[arg-type]
    except lifecycle.GateFailed as refused:
        assert not clean, refused
        assert "validation run #7" in str(refused)
    else:
        assert clean


@pytest.mark.django_db
@settings_given(  # the settings and version are the same for every example
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    asked=st.fixed_dictionaries(
        {},
        optional={
            "days": st.sampled_from([5, 10]),
            "start": st.just("2024-02-01"),
            "end": st.just("2024-02-10"),
            "fee_bps": st.sampled_from([0.0, 10.0, 30.0]),
            "slippage_bps": st.sampled_from([0.0, 5.0]),
            "comparison": st.just(True),
            "walk_forward": st.sampled_from([2, 3]),
            "allow_in_sample": st.just(True),
        },
    )
)
def test_only_a_request_that_asks_for_nothing_of_its_own_is_judged_on_folds(
    asked: dict[str, Any],
    version: ModelVersion,  # noqa: F811
    settings: Any,
) -> None:
    """Any option a request sets (window, costs even when higher, a comparison, parts of
    one model's run, in-sample) makes it a single window, which a fold policy never lets
    validate a version."""
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    assert walk_forward.refit_applies_to(version, ValidationOptions(**asked)) == (not asked)
