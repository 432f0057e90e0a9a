"""train_model (command, service, Celery task) on a tiny slice of the real data.

Real TensorFlow, tf2onnx and ONNX Runtime; a few hundred candles, one epoch, a
small network, so each training takes a second or two after TensorFlow loads.
"""

from __future__ import annotations

import json
import stat
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from engine.data import import_klines_csv, import_sentiment_csv, stored_candle_range
from engine.training.config import DEFAULT_ENTRY_QUANTILE, DEFAULT_EXIT_QUANTILE
from models_registry.models import AuditEvent, ModelState, ModelVersion
from models_registry.services.model_versions import sha256_of, version_dir
from models_registry.services.training import (
    TEMP_PREFIX,
    TrainingRefused,
    training_artifacts_build,
    training_data_load,
    training_options_parse,
    training_run,
)
from models_registry.tasks.training import _progress_reporter, train_model_task
from tests.support.tiny_world import write_csv_slice

pytestmark = pytest.mark.slow

# 800 hours cannot hold an up, a down and a sideways 30-day window: the tiny runs say so.
TINY_REASON = "tiny test data: 800 hours hold no whole 30-day window"
TINY_ARGS = [
    "--window", "12", "--units", "8", "--epochs", "1", "--allow-short-history",
    "--allow-missing-conditions", TINY_REASON, "--hold-out-days", "0",
]  # fmt: skip
TINY_OPTIONS: dict[str, Any] = {
    "window": 12,
    "units": 8,
    "epochs": 1,
    "allow_short_history": True,
    "allow_missing_conditions": TINY_REASON,
    # 800 hours leave nothing after the default hold-out of the policy's 90 + 14 days.
    "hold_out_days": 0,
}
SENTIMENT_FILES = [
    "BTCUSDT_sentiment_training.png",
    "btcusdt_sentiment.onnx",
    "btcusdt_sentiment_metadata.json",
]
PRICE_FILES = [name.replace("sentiment", "price") for name in SENTIMENT_FILES]


@pytest.fixture(scope="module")
def tiny_store(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BTCUSDT: 800 contiguous hours of 2024; ETHUSDT: 300 hours around the real missing hour."""
    folder = tmp_path_factory.mktemp("tiny_store")
    store = folder / "store"
    btc = write_csv_slice(
        shared_data_dir / "BTCUSDT-1h.csv", folder / "btc.csv", "2024-01-01 00:00", 800
    )
    eth = write_csv_slice(
        shared_data_dir / "ETHUSDT-1h.csv", folder / "eth.csv", "2023-03-20 00:00", 300
    )
    import_klines_csv(btc, store, symbol="BTCUSDT", interval="1h")
    # The default import policy keeps and reports gaps, so the store holds the real one.
    import_klines_csv(eth, store, symbol="ETHUSDT", interval="1h")
    import_sentiment_csv(shared_data_dir / "fear_greed_index.csv", store)
    return store


@pytest.fixture
def media(tmp_path: Path, settings: Any, tiny_store: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRADEBOT_DATA_DIR = tiny_store
    settings.ENVIRONMENT = "development"
    return settings.MEDIA_ROOT


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder for this test, so leftovers of a run can be seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def train(*args: str) -> str:
    out = StringIO()
    call_command("train_model", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def stored_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


def work_folders(temp_dir: Path) -> list[Path]:
    """The service's own temporary folders (TensorFlow leaves autograph files of its own)."""
    return list(temp_dir.glob(f"{TEMP_PREFIX}*"))


def assert_nothing_left(media: Path, private_tmp: Path, output_dir: Path | None = None) -> None:
    assert ModelVersion.objects.count() == 0
    assert stored_files(media) == []
    assert work_folders(private_tmp) == []
    if output_dir is not None:
        assert not output_dir.exists() or list(output_dir.iterdir()) == []
        assert [p for p in output_dir.parent.iterdir() if ".partial-" in p.name] == []


def test_help_lists_every_option() -> None:
    parser = load_command_class("models_registry", "train_model").create_parser(
        "manage.py", "train_model"
    )
    text = parser.format_help()
    for option in [
        "--force-price-only", "--interval", "--start", "--end", "--epochs", "--window",
        "--units", "--seed", "--allow-short-history", "--gap-policy", "--output-dir",
        "--no-db", "--json", "--data-dir", "--user", "--horizon", "--objective", "--entry",
        "--exit", "--min-hold", "--search", "--hold-out-days",
    ]:  # fmt: skip
        assert option in text


@pytest.mark.django_db
def test_no_db_leaves_exactly_the_three_artifacts_in_the_output_dir(
    media: Path, private_tmp: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = json.loads(
        train("BTCUSDT", *TINY_ARGS, "--no-db", "--output-dir", str(out), "--json")
    )

    assert sorted(p.name for p in out.iterdir()) == SENTIMENT_FILES
    assert summary["registered"] is False and summary["model_version_id"] is None
    assert summary["artifacts"]["onnx"] == str(out.resolve() / "btcusdt_sentiment.onnx")
    assert summary["onnx_sha256"] == sha256_of(out / "btcusdt_sentiment.onnx")
    assert summary["parity_max_abs_diff"] <= 1e-4
    assert summary["uses_sentiment"] is True
    assert any("183 days" in warning for warning in summary["warnings"])
    metadata = json.loads((out / "btcusdt_sentiment_metadata.json").read_text())
    assert metadata["version"] is None and metadata["allow_short_history"] is True
    assert_nothing_left(media, private_tmp)


@pytest.mark.django_db
def test_a_run_registers_a_trained_version_with_the_stored_files(
    media: Path, private_tmp: Path
) -> None:
    alice = get_user_model().objects.create_user("alice")
    summary = json.loads(
        train("BTCUSDT", *TINY_ARGS, "--force-price-only", "--user", "alice", "--json")
    )

    version = ModelVersion.objects.get()
    assert summary["model_version_id"] == version.pk and summary["version"] == 1
    assert (version.name, version.state, version.kind) == (
        "btcusdt_price",
        ModelState.TRAINED,
        "price",
    )
    assert version.created_by == alice and version.allow_short_history is True
    folder = version_dir(version)
    assert sorted(p.name for p in folder.iterdir()) == PRICE_FILES
    onnx = folder / "btcusdt_price.onnx"
    assert sha256_of(onnx) == version.onnx_sha256 == summary["onnx_sha256"]
    assert json.loads((folder / version.metadata_file).read_text())["version"] == 1
    assert not onnx.stat().st_mode & stat.S_IWUSR  # write-once store
    assert summary["artifacts"]["onnx"] == str(onnx)
    assert work_folders(private_tmp) == []

    text = train("BTCUSDT", *TINY_ARGS, "--force-price-only", "--seed", "7")
    assert "registered btcusdt_price version 2" in text
    assert ModelVersion.objects.filter(name="btcusdt_price").count() == 2


@pytest.mark.django_db
def test_missing_market_conditions_fail_the_training_gate_leaving_nothing(
    media: Path, private_tmp: Path
) -> None:
    # Observation 6 of issue 12: this only warned, and such a model was approved.
    options = {k: v for k, v in TINY_OPTIONS.items() if k != "allow_missing_conditions"}
    with pytest.raises(TrainingRefused) as refusal:
        training_run(symbol="BTCUSDT", options=options, requested_by=None)
    message = str(refusal.value)
    assert "\n" not in message
    assert "no up/down/sideways 30-day window" in message
    assert "--allow-missing-conditions" in message
    assert_nothing_left(media, private_tmp)
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_blank_override_reason_is_refused_before_training(media: Path, private_tmp: Path) -> None:
    with pytest.raises(TrainingRefused, match="needs a written reason"):
        training_run(
            symbol="BTCUSDT",
            options={**TINY_OPTIONS, "allow_missing_conditions": " "},
            requested_by=None,
        )
    assert_nothing_left(media, private_tmp)


@pytest.mark.django_db
def test_the_override_is_one_audit_event_on_the_version(media: Path, private_tmp: Path) -> None:
    version = training_run(symbol="BTCUSDT", options=TINY_OPTIONS, requested_by=None)
    events = AuditEvent.objects.filter(event_type="market_conditions_override")
    assert events.count() == 1
    event = events.get()
    assert event.object_id == str(version.pk)
    assert event.data["reason"] == TINY_REASON
    assert "no up/down/sideways 30-day window" in event.data["failure"]
    assert version.first_unseen_at == version.out_of_sample_from
    assert version.fit_end < version.selection_end < version.first_unseen_at


@pytest.mark.django_db
def test_ffill_repairs_the_real_gap_and_records_the_repair(
    media: Path, private_tmp: Path, tmp_path: Path
) -> None:
    options = training_options_parse({"gap_policy": "ffill", "hold_out_days": 0})
    data = training_data_load(symbol="ETHUSDT", options=options)
    assert data.repair is not None and data.repair["filled_rows"] == 1
    assert data.repair["first_gaps_at"] == ["2023-03-24T13:00:00Z"]
    assert data.candles.index.to_series().diff().dropna().nunique() == 1

    out = tmp_path / "out"
    train("ETHUSDT", *TINY_ARGS, "--gap-policy", "ffill", "--no-db", "--output-dir", str(out))
    metadata = json.loads(next(out.glob("*_metadata.json")).read_text())
    assert metadata["data"]["repair"]["filled_rows"] == 1
    assert metadata["data"]["store_content_hash"] == data.store_content_hash
    assert metadata["data"]["content_hash"] != data.store_content_hash
    assert any("forward-filled" in warning for warning in metadata["warnings"])


@pytest.mark.django_db
def test_without_an_end_the_newest_days_stay_unseen_for_the_policy_window(
    media: Path, private_tmp: Path, tiny_store: Path
) -> None:
    """The default hold-out: the version's first unseen bar leaves the policy window in the store.

    800 stored hours and a 10-day hold-out: training reads only bars before the hold-out,
    the metadata says which bars were kept unseen and why, and the whole held-out span is
    after everything the model was fit, selected or tested on.
    """
    options = {**TINY_OPTIONS, "hold_out_days": 10}
    version = training_run(symbol="BTCUSDT", options=options, requested_by=None)
    held_out = version.metadata["data"]["held_out"]
    stored = stored_candle_range(tiny_store, "BTCUSDT", "1h")
    assert stored is not None
    stop = stored[1] + pd.Timedelta(hours=1)
    assert pd.Timestamp(held_out["until"]) == stop
    assert pd.Timestamp(held_out["from"]) == stop - pd.Timedelta(days=10)
    assert held_out["why"] == "--hold-out-days"
    assert pd.Timestamp(version.metadata["data"]["end"]) < pd.Timestamp(held_out["from"])
    assert version.first_unseen_at is not None
    assert version.first_unseen_at <= pd.Timestamp(held_out["from"]).to_pydatetime()
    # the classifier's default levels come from its own selection-split predictions
    strategy = version.metadata["strategy"]
    assert strategy["units"] == "probability"
    assert strategy["levels_from"]["split"] == "validation"
    quantiles = strategy["levels_from"]["quantiles"]
    entry = quantiles[f"{DEFAULT_ENTRY_QUANTILE:.2f}"]
    assert strategy["params"]["entry"] == entry
    assert strategy["params"]["exit"] == min(quantiles[f"{DEFAULT_EXIT_QUANTILE:.2f}"], entry)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["SOLUSDT", *TINY_ARGS], "no SOLUSDT 1h candles"),
        (["BTCUSDT", "--epochs", "1", "--hold-out-days", "0"], "training needs at least 183 days"),
        (["BTCUSDT", "--epochs", "1"], "holding out the newest 104 days .* leaves no BTCUSDT"),
        (["BTCUSDT", *TINY_ARGS, "--hold-out-days", "-1"], "--hold-out-days must be a number"),
        (["BTCUSDT", *TINY_ARGS, "--hold-out-days", "nan"], "--hold-out-days must be a number"),
        (["ETHUSDT", *TINY_ARGS, "--gap-policy", "refuse"], "--gap-policy ffill"),
        (["ETHUSDT", *TINY_ARGS, "--gap-policy", "backfill"], "invalid choice: 'backfill'"),
        (["BTCUSDT", *TINY_ARGS, "--epochs", "0"], "epochs must be a positive integer"),
        (["BTCUSDT", *TINY_ARGS, "--interval", "7m"], "interval"),
        (["BTCUSDT", *TINY_ARGS, "--window", "4"], "window must be at least 9"),
        (["BTCUSDT", *TINY_ARGS, "--start", "2024-02-01", "--end", "2024-01-01"], "before end"),
        (["BTCUSDT", *TINY_ARGS, "--start", "soon"], "--start: 'soon' is not an ISO 8601 date"),
        (["BTCUSDT", *TINY_ARGS, "--user", "nobody"], "no user named 'nobody'"),
        (["btc-usdt", *TINY_ARGS], "symbol must be letters and digits"),
        (["BTCUSDT", *TINY_ARGS, "--horizon", "25"], "horizon must be 1 to 24 bars, got 25"),
        (["BTCUSDT", *TINY_ARGS, "--entry", "nan"], "entry must be a finite number, got nan"),
        (["BTCUSDT", *TINY_ARGS, "--exit", "inf"], "exit must be a finite number, got inf"),
        (["BTCUSDT", *TINY_ARGS, "--min-hold", "-1"], "min_hold must be >= 0 bars"),
        (["BTCUSDT", *TINY_ARGS, "--objective", "rank"], "invalid choice: 'rank'"),
        (["BTCUSDT", *TINY_ARGS, "--search", "0"], "--search must be a positive number"),
    ],
)
def test_refusals_leave_no_version_and_no_files(
    media: Path, private_tmp: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        train(*args, "--output-dir", str(out))
    assert_nothing_left(media, private_tmp, out)


@pytest.mark.django_db
def test_no_db_without_an_output_dir_is_refused(media: Path, private_tmp: Path) -> None:
    with pytest.raises(CommandError, match="--no-db needs --output-dir"):
        train("BTCUSDT", *TINY_ARGS, "--no-db")
    assert_nothing_left(media, private_tmp)


@pytest.mark.django_db
def test_every_entry_point_refuses_to_train_in_production(
    media: Path, private_tmp: Path, tmp_path: Path, settings: Any
) -> None:
    settings.ENVIRONMENT = "production"
    out = tmp_path / "out"
    with pytest.raises(CommandError, match="never to train in production"):
        train("BTCUSDT", *TINY_ARGS, "--output-dir", str(out))
    with pytest.raises(CommandError, match="never to train in production"):
        train("BTCUSDT", *TINY_ARGS, "--no-db", "--output-dir", str(out))
    with pytest.raises(TrainingRefused, match="production"):
        training_run(symbol="BTCUSDT", options=TINY_OPTIONS, requested_by=None)
    eager = train_model_task.apply(args=["BTCUSDT", TINY_OPTIONS, None])
    assert eager.failed() and isinstance(eager.result, TrainingRefused)
    assert_nothing_left(media, private_tmp, out)


@pytest.mark.django_db
def test_unknown_option_from_a_task_or_form_is_refused(media: Path, private_tmp: Path) -> None:
    with pytest.raises(TrainingRefused, match=r"unknown training option\(s\) \['learning_rat'\]"):
        training_run(symbol="BTCUSDT", options={"learning_rat": 0.1}, requested_by=None)
    with pytest.raises(TrainingRefused, match="force_price_only must be true or false"):
        training_run(symbol="BTCUSDT", options={"force_price_only": "yes"}, requested_by=None)
    assert_nothing_left(media, private_tmp)


class InjectedFailure(RuntimeError):
    pass


def fail_after_first_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
    raise InjectedFailure(f"stopped at epoch {epoch} of {total}")


@pytest.mark.django_db
def test_a_failure_mid_run_leaves_nothing_behind(
    media: Path, private_tmp: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(InjectedFailure, match="epoch 1"):
        training_run(
            symbol="BTCUSDT",
            options=TINY_OPTIONS,
            requested_by=None,
            origin_key="task-1",
            on_epoch=fail_after_first_epoch,
            output_dir=out,
        )
    with pytest.raises(InjectedFailure):
        training_artifacts_build(
            symbol="BTCUSDT", options=TINY_OPTIONS, output_dir=out, on_epoch=fail_after_first_epoch
        )
    assert_nothing_left(media, private_tmp, out)


def test_progress_is_reported_as_a_progress_state() -> None:
    class RecordingTask:
        def __init__(self) -> None:
            self.states: list[tuple[str, dict[str, Any]]] = []

        def update_state(self, *, state: str, meta: dict[str, Any]) -> None:
            self.states.append((state, meta))

    task = RecordingTask()
    _progress_reporter(task)(2, 5, {"loss": 0.25, "val_loss": 0.5})  # type: ignore[arg-type]
    assert task.states == [("PROGRESS", {"epoch": 2, "total": 5, "loss": 0.25, "val_loss": 0.5})]


def test_search_progress_keeps_the_epoch_keys_and_adds_the_trial() -> None:
    from models_registry.tasks.training import _progress_reporters

    class RecordingTask:
        def __init__(self) -> None:
            self.states: list[tuple[str, dict[str, Any]]] = []

        def update_state(self, *, state: str, meta: dict[str, Any]) -> None:
            self.states.append((state, meta))

    task = RecordingTask()
    reporters = _progress_reporters(task, {"search": 3})  # type: ignore[arg-type]
    reporters["on_epoch"](1, 2, {"loss": 0.3, "val_loss": 0.4})
    reporters["on_trial"](0, 3, {"state": "complete"})
    reporters["on_epoch"](1, 2, {"loss": 0.2, "val_loss": 0.3})
    first, finished, second = (meta for _state, meta in task.states)
    assert first == {
        "epoch": 1,
        "total": 2,
        "loss": 0.3,
        "val_loss": 0.4,
        "trial": 1,
        "n_trials": 3,
    }
    assert finished["trial_state"] == "complete" and finished["n_trials"] == 3
    assert (second["trial"], second["n_trials"], second["epoch"]) == (2, 3, 1)


@pytest.mark.django_db
def test_a_search_registers_the_best_trial_with_every_trial_recorded(
    media: Path, private_tmp: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = json.loads(train("BTCUSDT", *TINY_ARGS, "--search", "2", "--json",
                               "--output-dir", str(out)))  # fmt: skip
    version = ModelVersion.objects.get(pk=summary["model_version_id"])
    search = version.metadata["search"]
    assert search["n_trials"] == 2 and len(search["trials"]) == 2
    assert search["best_trial"] in (0, 1)
    assert all(t["state"] == "complete" for t in search["trials"])
    assert search["plot"] == f"{version.name}_trials.png"
    assert work_folders(private_tmp) == []


def wait_for_log(path: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{text!r} not seen {count} times in {timeout}s:\n{path.read_text()[-3000:]}"
    )


@pytest.mark.django_db(transaction=True)
def test_the_task_on_a_real_worker_makes_one_version_even_when_delivered_twice(
    celery_worker_factory: Any, tiny_store: Path, tmp_path: Path
) -> None:
    media, worker_tmp = tmp_path / "worker-media", tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    worker = celery_worker_factory(
        queues="training",
        env={
            "MEDIA_ROOT": str(media),
            "TRADEBOT_DATA_DIR": str(tiny_store),
            "TMPDIR": str(worker_tmp),
            "ENVIRONMENT": "development",
        },
    )
    bob = get_user_model().objects.create_user("bob")
    task_id = str(uuid.uuid4())

    first = train_model_task.apply_async(args=["BTCUSDT", TINY_OPTIONS, bob.pk], task_id=task_id)
    result = first.get(timeout=180)
    train_model_task.apply_async(args=["BTCUSDT", TINY_OPTIONS, bob.pk], task_id=task_id)
    wait_for_log(worker.log_path, f"[{task_id}] succeeded", count=2, timeout=120)

    version = ModelVersion.objects.get()
    assert result == {"model_version_id": version.pk, "name": "btcusdt_sentiment", "version": 1}
    assert train_model_task.AsyncResult(task_id).get(timeout=10) == result
    assert version.origin_key == task_id and version.created_by == bob
    assert sha256_of(media / version.artifact_dir / version.onnx_file) == version.onnx_sha256
    assert work_folders(worker_tmp) == []
    # The second delivery found the version by its task id instead of training again.
    assert worker.log_path.read_text().count(f"training {task_id} already produced") == 1
