"""run_backtest (command, validation service, Celery task) with a tiny model on real candles.

The store holds 1,000 real BTCUSDT hours from 2024-01-01; the model is trained on the
first 600 of them, so the bars after its out-of-sample start are real unseen data.
"""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from celery.result import AsyncResult
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from engine.data import read_candles
from engine.features.pipeline import required_history
from models_registry.guards import transition_write
from models_registry.models import AuditEvent, ModelState, ModelVersion, RunStatus, ValidationRun
from models_registry.services import runs
from models_registry.services.model_versions import model_version_create
from models_registry.tasks.backtest import run_validation
from tests.support.gates import loose_validation
from tests.support.policy import ONE_WINDOW, adopt_settings_policy
from tests.support.tiny_world import build_btc_store, tiny_full_model

STORE_ROWS = 1000
GENEROUS_GATES = {
    "validation": loose_validation(min_sharpe=-100, max_drawdown=1.0, min_trades=0, min_bars=10)
}
STRICT_GATES = {"validation": {"min_sharpe": 100}}
REGISTRY_METRICS = (
    "sharpe",
    "sortino",
    "total_return",
    "max_drawdown",
    "trades",
    "win_rate",
    "profit_factor",
)


@pytest.fixture(scope="module")
def store(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("backtest_store")
    return build_btc_store(shared_data_dir, folder, start="2024-01-01 00:00", rows=STORE_ROWS)


@pytest.fixture(scope="module")
def model_dir(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_full_model(shared_data_dir, tmp_path_factory)


@pytest.fixture
def media(tmp_path: Path, settings: Any, store: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRADEBOT_DATA_DIR = store
    settings.VAR_DIR = tmp_path / "var"
    # The tiny store holds 400 unseen bars: a 10-day policy window fits in it.
    settings.TRADEBOT_VALIDATION_POLICY = {"days": 10, **ONE_WINDOW}
    return settings.MEDIA_ROOT


@pytest.fixture
def version(media: Path, model_dir: Path, db: None) -> ModelVersion:
    return model_version_create(source_dir=model_dir, created_by=None)


def backtest(*args: str, gates_fail: bool = False) -> str:
    """The command's report; `gates_fail`: it must exit 2 (a gate failed) after printing it."""
    out = StringIO()
    if not gates_fail:
        call_command("run_backtest", *args, stdout=out, stderr=StringIO())
        return out.getvalue()
    with pytest.raises(CommandError, match="failed its gates") as failed:
        call_command("run_backtest", *args, stdout=out, stderr=StringIO())
    assert failed.value.returncode == 2
    return out.getvalue()


def backtest_json(*args: str, gates_fail: bool = False) -> dict[str, Any]:
    return json.loads(backtest(*args, "--json", gates_fail=gates_fail))


def out_of_sample_from(version: ModelVersion) -> pd.Timestamp:
    return pd.Timestamp(version.metadata["out_of_sample_from"]).tz_convert("UTC")


def policy_start(metadata: dict[str, Any]) -> pd.Timestamp:
    """One bar after the last bar any split (test split included) touched."""
    last = max(pd.Timestamp(s["last_target_bar"]) for s in metadata["splits"].values())
    declared = pd.Timestamp(metadata["out_of_sample_from"]).ceil("1h")
    return max(last + pd.Timedelta(hours=1), declared).tz_convert("UTC")


def assert_nothing_recorded(media: Path) -> None:
    assert ValidationRun.objects.count() == 0
    assert not AuditEvent.objects.filter(event_type__startswith="validation").exists()
    reports = media / "validation"
    assert not reports.exists() or list(reports.iterdir()) == []


# --- --no-db ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_db_writes_chart_trades_and_metrics_and_records_nothing(
    media: Path, model_dir: Path, store: Path, tmp_path: Path
) -> None:
    output = tmp_path / "report"
    summary = backtest_json(
        "ml_basic", "--days", "10", "--no-db", "--model-path", str(model_dir),
        "--output-dir", str(output), "--walk-forward", "2", "--data-dir", str(store),
    )  # fmt: skip

    metadata = json.loads(next(model_dir.glob("*_metadata.json")).read_text())
    assert pd.Timestamp(summary["window_start"]) == policy_start(metadata)
    assert summary["n_bars"] == 240
    assert summary["sample_status"] == "out_of_sample"
    assert len(summary["walk_forward"]) == 2
    assert set(summary["metrics"]["buy_and_hold"]) >= {"total_return", "sharpe"}
    files = {kind: Path(path) for kind, path in summary["files"].items()}
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files["trades_csv"].read_text().startswith("entry_time,exit_time,side")
    recorded = json.loads(files["metrics_json"].read_text())
    assert recorded["metrics"]["n_trades"] == summary["metrics"]["n_trades"]
    assert {p.parent for p in files.values()} == {output}
    assert ValidationRun.objects.count() == 0


@pytest.mark.django_db
def test_no_db_text_report_shows_gates_and_baseline(version: ModelVersion) -> None:
    # With --model: the registry's latest version is read, nothing is written to it.
    text = backtest("ml_basic", "--days", "10", "--no-db", "--model", version.name)

    assert "not recorded: --no-db" in text
    assert "buy and hold" in text
    assert "gate min_dsr" in text and "gate out_of_sample" in text
    assert "gate beats_buy_and_hold_by" in text and "gate beats_always_flat_by" in text
    assert "DSR" in text and "counted trial(s)" in text and "random long/flat (200 seeds" in text
    assert ValidationRun.objects.count() == 0
    version.refresh_from_db()
    assert version.state == ModelState.TRAINED


@pytest.mark.django_db
def test_buy_and_hold_reports_without_a_model_but_never_validates(
    version: ModelVersion, media: Path
) -> None:
    summary = backtest_json("buy_and_hold", "--days", "5", "--no-db")
    assert summary["strategy"] == "buy_and_hold"
    assert summary["metrics"]["n_trades"] == 1

    with pytest.raises(CommandError, match="does not use the model"):
        backtest("buy_and_hold", "--days", "5", "--model", version.name)
    assert_nothing_recorded(media)


# --- recorded runs ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_recorded_run_has_window_hash_metrics_gates_and_plot(
    version: ModelVersion, media: Path, store: Path
) -> None:
    summary = backtest_json("ml_basic", "--days", "10", "--model", version.name, gates_fail=True)

    run = ValidationRun.objects.get()
    assert summary["run_id"] == run.pk
    assert run.model_version == version and run.strategy == "ml_basic"
    start = policy_start(version.metadata)
    assert run.window_start == start
    assert run.window_end == start + pd.Timedelta(hours=239)
    history = 2 * required_history(version.metadata)
    expected = read_candles(
        store, "BTCUSDT", "1h", start=start - pd.Timedelta(hours=history),
        end=start + pd.Timedelta(days=10),
    ).content_hash  # fmt: skip
    assert run.data_content_hash == expected
    assert set(run.metrics) >= set(REGISTRY_METRICS)
    assert run.metrics["trades"] == run.metrics["n_trades"]
    assert "total_return" in run.benchmark_metrics
    assert run.config["fee_bps"] is None  # not asked: the policy's cost applies
    assert run.config["engine"]["fee_bps"] == 10.0
    assert run.config["gap_policy"]["fill_at_most_bars"] == 3
    gates = {g["name"]: g for g in run.gate_results}
    assert set(gates) >= {
        "min_dsr",
        "total_return_above",
        "beats_buy_and_hold_by",
        "beats_always_flat_by",
        "max_drawdown",
        "min_trades",
        "min_bars",
        "out_of_sample",
    }
    assert "min_sharpe" not in gates  # superseded by the deflated Sharpe ratio
    assert run.metrics["trials"] >= 2  # the version's training trial and this run
    assert all(set(g) >= {"name", "passed", "value", "threshold"} for g in gates.values())
    # 240 bars is below the default 720-bar minimum: the run fails that gate, honestly.
    assert gates["min_bars"]["passed"] is False and gates["min_bars"]["value"] == 240
    assert run.status == RunStatus.FAILED and run.passed is False
    assert run.report_dir == f"validation/{run.pk}"
    plot = media / run.report_dir / run.plot_file
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.suffix for p in plot.parent.iterdir()) == [".csv", ".json", ".json", ".png"]
    # The curves, kept once per run for pages that overlay them (Compare).
    curve = json.loads((plot.parent / "equity_curve.json").read_text())
    assert len(curve["index"]) == len(curve["strategy"]) == len(curve["buy_and_hold"]) == 240
    assert pd.Timestamp(curve["index"][0]) == run.window_start
    assert AuditEvent.objects.filter(event_type="validation_requested").count() == 1


@pytest.mark.django_db
def test_passing_run_validates_the_version_once(version: ModelVersion, settings: Any) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    text = backtest("ml_basic", "--days", "10", "--model", version.name)

    version.refresh_from_db()
    run = ValidationRun.objects.get()
    assert run.status == RunStatus.PASSED and run.passed is True
    assert version.state == ModelState.VALIDATED
    assert "moved to validated" in text
    validated = AuditEvent.objects.filter(event_type="model_version_validated")
    assert validated.count() == 1
    assert validated.get().object_id == str(version.pk)

    # A redelivered task message for the finished run does nothing.
    result = run_validation.apply(args=[run.pk]).get()
    assert "skipped" in result
    assert AuditEvent.objects.filter(event_type="model_version_validated").count() == 1


@pytest.mark.django_db
def test_failing_run_keeps_the_state_and_names_the_gate(
    version: ModelVersion, settings: Any
) -> None:
    settings.TRADEBOT_GATES = STRICT_GATES
    summary = backtest_json("ml_basic", "--days", "10", "--model-version", "1", gates_fail=True)

    version.refresh_from_db()
    run = ValidationRun.objects.get()
    assert version.state == ModelState.TRAINED
    assert run.status == RunStatus.FAILED
    assert "min_sharpe" in summary["failed_gates"]
    failed = [g["name"] for g in run.gate_results if not g["passed"]]
    assert "min_sharpe" in failed
    assert not AuditEvent.objects.filter(event_type="model_version_validated").exists()


@pytest.mark.django_db
def test_in_sample_window_is_refused_unless_allowed_and_then_never_passes(
    version: ModelVersion, media: Path, settings: Any
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    with pytest.raises(CommandError, match="out-of-sample"):
        backtest("ml_basic", "--start", "2024-01-15", "--days", "10", "--model", version.name)
    assert_nothing_recorded(media)

    backtest(
        "ml_basic", "--start", "2024-01-15", "--days", "10", "--model", version.name,
        "--allow-in-sample", gates_fail=True,
    )  # fmt: skip
    run = ValidationRun.objects.get()
    version.refresh_from_db()
    assert run.in_sample is True and run.passed is False and run.status == RunStatus.FAILED
    assert [g["name"] for g in run.gate_results if not g["passed"]] == ["out_of_sample"]
    assert version.state == ModelState.TRAINED


# --- refused input ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2025-06-01", "--end", "2025-07-01"], "no data to backtest"),
        (["--start", "2024-01-01", "--days", "0.2", "--allow-in-sample"], "too little data"),
        (["--fee-bps", "-1"], "cannot be negative"),
        (["--walk-forward", "0"], "walk_forward"),
        (
            ["--start", "2024-01-01", "--days", "0.0417", "--allow-in-sample"],
            "holds 1 1h bar.*not longer than the model's horizon of 1 bars: lengthen --days",
        ),
    ],
    ids=[
        "empty-window",
        "window-shorter-than-model",
        "negative-fee",
        "bad-walk-forward",
        "window-within-the-horizon",
    ],
)
def test_bad_input_is_refused_and_records_nothing(
    version: ModelVersion, media: Path, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        backtest("ml_basic", "--model", version.name, *args)
    assert_nothing_recorded(media)
    version.refresh_from_db()
    assert version.state == ModelState.TRAINED


@pytest.mark.django_db
def test_unknown_strategy_is_refused_naming_the_known_ones(media: Path) -> None:
    with pytest.raises(CommandError, match=r"unknown strategy 'ml_fancy'.*buy_and_hold, ml_basic"):
        backtest("ml_fancy", "--days", "10", "--no-db")
    assert_nothing_recorded(media)


@pytest.mark.django_db
def test_model_whose_metadata_does_not_match_its_onnx_is_refused(
    model_dir: Path, media: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    metadata_path = next(broken.glob("*_metadata.json"))
    metadata = json.loads(metadata_path.read_text())
    metadata["window"] += 1  # the ONNX input still takes the trained window
    metadata_path.write_text(json.dumps(metadata))
    version = model_version_create(source_dir=broken, created_by=None)

    with pytest.raises(CommandError, match="failed its checks"):
        backtest("ml_basic", "--days", "10", "--model", version.name)
    with pytest.raises(CommandError, match="failed its checks"):
        backtest("ml_basic", "--days", "10", "--no-db", "--model-path", str(broken))
    assert_nothing_recorded(media)


@pytest.mark.django_db
def test_model_path_cannot_be_recorded(model_dir: Path, media: Path) -> None:
    with pytest.raises(CommandError, match="--model-path needs --no-db"):
        backtest("ml_basic", "--days", "10", "--model-path", str(model_dir))
    assert_nothing_recorded(media)


@pytest.mark.django_db
def test_task_records_an_error_for_an_unrunnable_request(version: ModelVersion) -> None:
    run = ValidationRun.objects.create(
        model_version=version, config={"start": "2025-06-01", "end": "2025-07-01"}
    )
    result = run_validation.apply(args=[run.pk]).get()

    run.refresh_from_db()
    version.refresh_from_db()
    assert result["status"] == RunStatus.ERROR
    assert run.status == RunStatus.ERROR and "no data to backtest" in run.error
    assert run.metrics == {} and run.gate_results == []
    assert version.state == ModelState.TRAINED


# --- through a real Celery worker -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_runs_a_requested_validation(
    version: ModelVersion, media: Path, store: Path, settings: Any, celery_worker_factory: Any
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    celery_worker_factory(
        queues="backtest",
        env={
            "MEDIA_ROOT": str(media),
            "TRADEBOT_DATA_DIR": str(store),
            "TRADEBOT_GATES": json.dumps(GENEROUS_GATES),
            "TRADEBOT_VALIDATION_POLICY": json.dumps({"days": 10, **ONE_WINDOW}),
        },
    )
    run = runs.validation_run_request(model_version=version, requested_by=None, config={"days": 10})

    run.refresh_from_db()
    # The task's result, not the run's status: the version moves on just after the run is saved.
    outcome = AsyncResult(run.task_id).get(timeout=120)

    run.refresh_from_db()
    assert outcome["status"] == RunStatus.PASSED and outcome["version_state"] == "validated"
    version.refresh_from_db()
    assert run.status == RunStatus.PASSED, run.error
    assert run.task_id
    assert (media / run.report_dir / run.plot_file).is_file()
    assert version.state == ModelState.VALIDATED


# --- costs and windows are policy (issue 12) ---------------------------------------------------


@pytest.mark.django_db
def test_policy_window_starts_after_every_bar_training_and_selection_touched(
    version: ModelVersion,
) -> None:
    backtest("ml_basic", "--model", version.name, gates_fail=True)

    run = ValidationRun.objects.get()
    touched = [pd.Timestamp(s["last_target_bar"]) for s in version.metadata["splits"].values()]
    assert run.window_start > max(touched)  # the test split's bars are not judged again
    assert run.window_start == policy_start(version.metadata)
    assert run.window_end == run.window_start + pd.Timedelta(hours=239)  # policy: 10 days
    assert run.exploratory is False and run.exploratory_reasons == []


@pytest.mark.django_db
def test_zero_costs_on_a_hand_picked_window_is_exploratory_and_never_validates(
    version: ModelVersion, settings: Any
) -> None:
    # Observation 1 of issue 12: a second run with a chosen window and zero costs validated
    # a model that failed at the default costs. It may still run, but it moves nothing.
    settings.TRADEBOT_GATES = GENEROUS_GATES
    picked = policy_start(version.metadata) + pd.Timedelta(days=2)
    text = backtest(
        "ml_basic", "--start", picked.isoformat(), "--days", "5", "--fee-bps", "0",
        "--slippage-bps", "0", "--model", version.name,
    )  # fmt: skip

    run = ValidationRun.objects.get()
    version.refresh_from_db()
    assert run.passed is True  # the gates' verdict stays honest ...
    assert run.exploratory is True  # ... and the run is marked for what it is
    assert version.state == ModelState.TRAINED
    assert not AuditEvent.objects.filter(event_type="model_version_validated").exists()
    reasons = " | ".join(run.exploratory_reasons)
    assert "fee_bps 0 is below the policy's 10" in reasons
    assert "slippage_bps 0 is below the policy's 5" in reasons
    assert "is not the policy window" in reasons
    assert [line for line in text.splitlines() if "EXPLORATORY" in line] == [
        "  EXPLORATORY run (it can never validate a version): " + "; ".join(run.exploratory_reasons)
    ]
    assert "the version stays trained" in text
    assert run.config["engine"]["fee_bps"] == 0.0


@pytest.mark.django_db
def test_higher_costs_are_not_exploratory_and_costs_come_from_the_model_policy(
    version: ModelVersion, settings: Any
) -> None:
    settings.TRADEBOT_VALIDATION_POLICY_OVERRIDES = {version.name: {"fee_bps": 25}}
    for fee in (None, "10", "30"):  # at the default gates 240 bars are too few: all fail
        extra = () if fee is None else ("--fee-bps", fee)
        backtest("ml_basic", "--model", version.name, *extra, gates_fail=True)

    policy_run, cheaper, dearer = ValidationRun.objects.order_by("pk")
    assert policy_run.config["engine"]["fee_bps"] == 25.0 and not policy_run.exploratory
    assert cheaper.exploratory and cheaper.exploratory_reasons == [
        "fee_bps 10 is below the policy's 25"
    ]
    assert dearer.config["engine"]["fee_bps"] == 30.0 and not dearer.exploratory


@pytest.mark.django_db
def test_a_queued_run_asking_for_zero_costs_is_exploratory_and_moves_nothing(
    version: ModelVersion, settings: Any
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    run = runs.validation_run_request(
        model_version=version, requested_by=None, config={"fee_bps": 0}
    )
    # The worker receives the message under the task id made with the row.
    run_validation.apply(args=[run.pk], task_id=run.task_id).get()

    run.refresh_from_db()
    version.refresh_from_db()
    assert run.passed is True and run.exploratory is True
    assert version.state == ModelState.TRAINED
    recorded = AuditEvent.objects.get(event_type="validation_run_recorded")
    assert recorded.data["exploratory_reasons"] == ["fee_bps 0 is below the policy's 10"]


# --- which model, and the exit status (issue 12) -----------------------------------------------


def retrained_copy(model_dir: Path, folder: Path) -> Path:
    """The same model as a different ONNX file (a doc string differs), as a retraining gives."""
    import hashlib

    import onnx

    copy = folder / "retrained"
    shutil.copytree(model_dir, copy)
    onnx_path = next(copy.glob("*.onnx"))
    graph = onnx.load(onnx_path)
    graph.doc_string = "retrained copy"
    onnx.save(graph, onnx_path)
    metadata_path = next(copy.glob("*_metadata.json"))
    metadata = json.loads(metadata_path.read_text())
    metadata["onnx_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    metadata_path.write_text(json.dumps(metadata))
    return copy


def put_in_production(version: ModelVersion) -> None:
    """Only the state matters to the command here; the full walk (validation, paper run,
    staging, approval, deployment) is tested with the lifecycle services."""
    with transaction.atomic(), transition_write("test"):  # the database holds state too
        version._state_change_allowed = True
        version.state = ModelState.IN_PRODUCTION
        version.save(update_fields=["state"])
        version._state_change_allowed = False


@pytest.mark.django_db
def test_without_model_it_judges_the_version_in_production_not_the_newest(
    version: ModelVersion, model_dir: Path, settings: Any, tmp_path: Path
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    put_in_production(version)
    newer = model_version_create(source_dir=retrained_copy(model_dir, tmp_path), created_by=None)
    assert newer.version > version.version and newer.state == ModelState.TRAINED

    text = backtest("ml_basic", "--no-db")
    assert f"  model: {version.name} v{version.version} (in_production)" in text.splitlines()
    summary = backtest_json("ml_basic", "--no-db")
    assert summary["model_used"] == f"{version.name} v{version.version} (in_production)"

    # --model without --model-version still means that name's newest version, named as such.
    summary = backtest_json("ml_basic", "--no-db", "--model", version.name)
    assert summary["model_used"] == f"{newer.name} v{newer.version} (trained)"


@pytest.mark.django_db
def test_without_model_and_nothing_in_production_it_is_refused_naming_model(
    version: ModelVersion, media: Path
) -> None:
    for args in (["--no-db"], []):
        with pytest.raises(CommandError, match=r"^no model version is in production.*--model"):
            backtest("ml_basic", *args)
    assert_nothing_recorded(media)


@pytest.mark.django_db
def test_report_names_the_model_of_a_folder_and_of_a_recorded_run(
    version: ModelVersion, model_dir: Path, settings: Any
) -> None:
    summary = backtest_json("ml_basic", "--no-db", "--model-path", str(model_dir))
    metadata = json.loads(next(model_dir.glob("*_metadata.json")).read_text())
    assert summary["model_used"].startswith(f"{metadata['name']} v{metadata['version']} from")
    assert "(not a registry version)" in summary["model_used"]
    assert backtest_json("buy_and_hold", "--no-db")["model_used"] == (
        "none (buy_and_hold uses no model)"
    )

    settings.TRADEBOT_GATES = GENEROUS_GATES
    adopt_settings_policy()  # the policy is data: the environment only seeded the first one
    text = backtest("ml_basic", "--model", version.name, "--model-version", str(version.version))
    assert f"  model: {version.name} v{version.version} (validated)" in text.splitlines()


@pytest.mark.django_db
def test_exit_status_says_whether_the_gates_passed(version: ModelVersion, settings: Any) -> None:
    settings.TRADEBOT_GATES = STRICT_GATES
    adopt_settings_policy()  # the policy is data: the environment only seeded the first one
    # --no-db is a report: exit 0 whatever the gates say, unless asked to fail.
    text = backtest("ml_basic", "--no-db", "--model", version.name)
    assert "gates FAILED" in text
    text = backtest(
        "ml_basic", "--no-db", "--model", version.name, "--fail-on-gates", gates_fail=True
    )
    assert "gate min_sharpe" in text  # the report is printed before the exit

    # A recorded run that fails exits 2 and names the model and the failing gates.
    with pytest.raises(CommandError) as failed:
        backtest("ml_basic", "--model", version.name)
    assert failed.value.returncode == 2
    run = ValidationRun.objects.get()
    assert run.passed is False
    failed_gates = [g["name"] for g in run.gate_results if not g["passed"]]
    assert {"min_sharpe", "min_bars"} <= set(failed_gates)
    assert str(failed.value) == (
        f"validation of {version.name} v{version.version} (trained) failed its gates: "
        + ", ".join(failed_gates)
    )

    # A recorded run that passes exits 0; so does --fail-on-gates with passing gates.
    settings.TRADEBOT_GATES = GENEROUS_GATES
    adopt_settings_policy()
    backtest("ml_basic", "--no-db", "--model", version.name, "--fail-on-gates")
    backtest("ml_basic", "--model", version.name)
    version.refresh_from_db()
    assert version.state == ModelState.VALIDATED
