"""One concern: policy validation on re-fitted walk-forward folds, fanned out over Celery.

Policy validation on walk-forward evidence re-fitted per fold, fanned out over Celery (#28).

When the policy names ``refit_folds`` K > 0, a policy validation of a version is judged on K
consecutive folds of ``fold_days`` that end where the policy window ends. Each fold is an
independent job: a chain of ``walk_forward_train_fold`` (the ``training`` queue: the version's
own training configuration, from its metadata, on the stored bars before the fold, purged and
embargoed by the horizon) and ``walk_forward_trade_fold`` (the ``backtest`` queue: the fold
model's targets on the fold's bars, and its look-ahead check). The K chains are one Celery
group under a chord whose body, ``walk_forward_join``, joins the folds' out-of-sample targets
into one simulation, judges it with the policy's gates (the DSR counts every fold model as a
trial) and records the run, its trials and its report in one transaction.

Nothing is left half done:

- a fold that fails (bad data, a training error, a crash inside the task) is returned as
  that fold's error, and the join ends the run as an error naming every failed fold: never a
  pass on the remaining folds;
- a fold whose worker dies is redelivered (acks_late); a chord that errors anyway calls
  ``walk_forward_chord_failed``, which ends the run as an error;
- the run is ``running`` only while its folds run: ``jobs.runs_reconcile`` ends it after the
  walk-forward lease (``walk_forward_lease``) like any run whose worker died.

Beside the folds, one more job of the group, ``walk_forward_reproduce`` (``training``
queue), re-fits the version's recorded configuration on its own recorded training bars and
compares that model with the version's file on the last fold's bars
(``engine.backtest.reproduction``): what binds the fold evidence to the file. Its outcome
is recorded with the folds and shown to the approver; it never fails the run, because a
file trained on another machine may differ for reasons of arithmetic alone.

Tasks are sent by name (``current_app.signature``): this module imports no task module.
The version deployed is the one trained on all data before the policy window; why the fold
models are evidence for it is in docs/backtest.md ("Walk-forward evidence re-fitted per fold").
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from celery import chain, chord, current_app, group
from celery.canvas import Signature
from django.conf import settings
from django.db import transaction

from engine.backtest import BacktestError, BacktestRun
from engine.backtest.guards import OUT_OF_SAMPLE
from engine.backtest.report import json_safe, write_report
from engine.backtest.reproduction import Reproduction, compare_to_refit
from engine.backtest.simulator import SimulationConfig
from engine.backtest.walk_forward import (
    FoldTrades,
    RefitFold,
    fold_targets,
    judge_refit_evidence,
    plan_refit_folds,
)
from engine.data import (
    DataError,
    apply_candle_policy,
    content_hash,
    interval_timedelta,
    read_candles,
    read_sentiment,
    stored_candle_range,
)
from engine.data import ValidationPolicy as CandlePolicy
from engine.strategies import LookaheadFinding, StrategyError
from models_registry.events import EventType
from models_registry.gates import validation_policy_for
from models_registry.models import ModelTrial, ModelVersion, RunStatus, ValidationRun
from models_registry.policy import (
    policy_in_force,
    policy_name,
    stage_gates,
    window_policy,
)
from models_registry.services.audit import audit_event_record
from models_registry.services.jobs import WALK_FORWARD_CONFIG_KEY
from models_registry.services.runs import run_fail
from models_registry.services.trials import trials_counted_for_refit
from models_registry.services.validation import (
    DEFAULT_MAX_FILL,
    EQUITY_CURVE_FILE,
    INPUT_ERRORS,
    ModelSource,
    Progress,
    ValidationBacktest,
    ValidationOptions,
    ValidationRefused,
    _options_part,
    choose_window,
    policy_reasons,
    report_root,
    staging_report_dir,
    store_candles_read,
    store_sentiment_read,
    validation_run_create_inline,
    validation_run_record,
    write_equity_curve,
)
from tradebot.queues import BACKTEST, TRAINING

logger = logging.getLogger(__name__)

# New audit event type (for the event catalogue): the folds a run was fanned out into.
FOLDS_DISPATCHED = EventType.VALIDATION_FOLDS_DISPATCHED
TRAIN_FOLD_TASK = "models_registry.walk_forward_train_fold"
TRADE_FOLD_TASK = "models_registry.walk_forward_trade_fold"
JOIN_TASK = "models_registry.walk_forward_join"
CHORD_FAILED_TASK = "models_registry.walk_forward_chord_failed"
REPRODUCE_TASK = "models_registry.walk_forward_reproduce"
CONFIG_KEY = WALK_FORWARD_CONFIG_KEY
FOLDS_FOLDER = "folds"
REPRODUCTION = "reproduction"


@dataclass(frozen=True)
class RefitPolicy:
    folds: int
    fold_days: float

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> RefitPolicy:
        return cls(int(policy.get("refit_folds") or 0), float(policy.get("fold_days") or 0))


def refit_applies(run: ValidationRun, options: ValidationOptions) -> bool:
    """A policy validation under a policy with refit folds; any other run keeps one window.

    An exploratory request (its own days, window or costs, a comparison) and a scheduled
    re-validation (which judges live bars after the version's window) are single-window runs.
    """
    if run.kind != ValidationRun.KIND_BACKTEST:
        return False
    return refit_applies_to(run.model_version, options)


def refit_applies_to(version: ModelVersion, options: ValidationOptions) -> bool:
    """Whether a policy validation of `version` with `options` is judged on re-fitted folds."""
    asked = (options.days, options.start, options.end, options.fee_bps, options.slippage_bps)
    if any(value is not None for value in asked) or options.comparison:
        return False
    if options.walk_forward != 1 or options.allow_in_sample:
        return False
    return RefitPolicy.from_policy(validation_policy_for(version.name)).folds > 0


# --- planning and dispatch -------------------------------------------------------------------


def refit_plan(version: ModelVersion, *, data_dir: Path | None = None) -> list[RefitFold]:
    """The folds of a policy validation of `version`; ValidationRefused naming what is wrong."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    policy = validation_policy_for(version.name)
    refit = RefitPolicy.from_policy(policy)
    source = ModelSource.for_version(version)
    metadata = source.metadata or {}
    horizon = metadata.get("horizon")
    if not isinstance(horizon, int) or isinstance(horizon, bool):
        raise ValidationRefused(f"{version} states no horizon: its folds cannot be purged")
    _, stop = choose_window(
        data_dir,
        version.symbol,
        version.interval,
        metadata,
        ValidationOptions(),
        policy,
        first_unseen=source.first_unseen_at,
    )
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    assert stored is not None  # choose_window refuses an empty store
    start = (metadata.get("data") or {}).get("start")
    data_start = max(pd.Timestamp(start), stored[0]) if start else stored[0]
    try:
        return plan_refit_folds(
            evidence_stop=stop,
            folds=refit.folds,
            fold_days=refit.fold_days,
            step=interval_timedelta(version.interval),
            horizon=horizon,
            data_start=data_start,
            min_train_days=fold_training_minimum_days(metadata),
        )
    except BacktestError as exc:
        raise ValidationRefused(str(exc)) from exc


def fold_training_minimum_days(metadata: Mapping[str, Any]) -> float:
    """The history the version's own configuration needs (its min_history_days), so a plan
    whose first fold could not be trained is refused before any fold runs."""
    config = (metadata.get("training") or {}).get("config") or {}
    if config.get("allow_short_history"):
        return 0.0
    return float(config.get("min_history_days") or 0)


def walk_forward_validation_start(run: ValidationRun) -> bool:
    """Fan a claimed policy run out into its folds; False when the run is a single window.

    The run stays ``running``; the join records it. A plan that cannot be made ends the run
    as an error at once.
    """
    try:
        options = ValidationOptions.from_config(
            {**_options_part(run.config), "strategy": run.strategy}
        )
        options.check_recordable()
    except ValidationRefused:
        return False  # validation_execute records the refusal as it always has
    if not refit_applies(run, options):
        return False
    try:
        plan = refit_plan(run.model_version)
    except INPUT_ERRORS as exc:
        run_fail(run=run, error=f"walk-forward evidence cannot be planned: {exc}")
        return True
    if fold_plan_record(run, plan):
        transaction.on_commit(lambda: _send_chord(run.pk, plan))
    return True


def fold_plan_record(run: ValidationRun, plan: list[RefitFold]) -> bool:
    """Write the plan on the running run with its audit event; False when there is nothing
    to run (the run finished or was reconciled meanwhile, or a redelivery finds it written)."""
    with transaction.atomic():
        locked = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            return False  # finished or reconciled meanwhile: nothing to fan out
        if CONFIG_KEY in (locked.config or {}):
            return False  # a redelivery: the first delivery dispatched the folds already
        in_force = policy_in_force(locked.model_version.name)
        planned_under = {"name": policy_name(in_force), "hash": in_force.content_hash}
        record = {"folds": [fold.to_dict() for fold in plan], "policy": planned_under}
        # Not a status: the plan the join and reconcile read, written with its audit event.
        ValidationRun.objects.filter(pk=run.pk).update(config={**locked.config, CONFIG_KEY: record})
        audit_event_record(
            event_type=FOLDS_DISPATCHED, actor=None, obj=locked, data=json_safe(record)
        )
    return True


def walk_forward_validation_inline(
    *,
    model_version: ModelVersion,
    requested_by: Any,
    options: ValidationOptions,
    progress: Progress | None = None,
) -> ValidationRun:
    """A policy validation on re-fitted folds run right here, one fold after another (the
    ``run_backtest`` command, like ``deploy_model --inline``): the same fold jobs and the same
    join as the chord the workers run, so the evidence and its record are the same.

    The plan is made first, so a plan that cannot be made leaves no run behind; once the run
    exists it always ends terminal, an interruption (Ctrl-C) included.
    """
    options.check_recordable()
    plan = refit_plan(model_version)
    run = validation_run_create_inline(
        model_version=model_version, requested_by=requested_by, options=options
    )
    try:
        if not fold_plan_record(run, plan):
            raise AssertionError(f"validation run {run.pk} stopped running before its folds")
        results = [_fold_here(run.pk, fold, progress) for fold in plan]
        if progress is not None:
            progress("re-fitting the version's own configuration to check its file reproduces")
        results.append(fold_reproduce(run.pk, plan[-1].to_dict()))
        if progress is not None:
            progress(f"judging the {len(plan)} folds joined")
        return walk_forward_join(results, run.pk)
    except BaseException as exc:
        run_fail(run=run, error=f"walk-forward validation interrupted: {type(exc).__name__}: {exc}")
        _discard_folds(run.pk)
        raise


def _fold_here(run_id: int, fold: RefitFold, progress: Progress | None) -> dict[str, Any]:
    if progress is not None:
        progress(f"{fold.name}: training on the bars before {fold.train_stop.date()}")
    trained = fold_train(run_id, fold.to_dict())
    if progress is not None and not trained.get("error"):
        progress(f"{fold.name}: trading {fold.start.date()} to {fold.stop.date()}")
    return fold_trade(trained, run_id)


def fold_chord(run_id: int, plan: list[RefitFold]) -> Any:
    """The Celery canvas: a group of train->trade chains under a chord whose body joins them."""
    chains = [
        chain(
            _by_name(TRAIN_FOLD_TASK, (run_id, fold.to_dict()), TRAINING),
            _by_name(TRADE_FOLD_TASK, (run_id,), BACKTEST),
        )
        for fold in plan
    ]
    reproduce = _by_name(REPRODUCE_TASK, (run_id, plan[-1].to_dict()), TRAINING)
    body = _by_name(JOIN_TASK, (run_id,), BACKTEST)
    body.link_error(_by_name(CHORD_FAILED_TASK, (), BACKTEST, run_id=run_id))
    return chord(group([*chains, reproduce]), body)


def _by_name(name: str, args: tuple, queue: str, **kwargs: Any) -> Signature:
    return current_app.signature(name, args=args, kwargs=kwargs, queue=queue)


def _send_chord(run_id: int, plan: list[RefitFold]) -> None:
    try:
        fold_chord(run_id, plan).apply_async()
    except Exception as exc:  # the broker's errors vary by transport
        logger.exception("could not queue the folds of validation run %s", run_id)
        run = ValidationRun.objects.get(pk=run_id)
        run_fail(run=run, error=f"could not queue its folds ({type(exc).__name__}: {exc})")


# --- the fold jobs ------------------------------------------------------------------------------


def fold_folder(run_id: int, fold: RefitFold) -> Path:
    """Where a fold's model is trained: replaced whole by a redelivery of the same fold."""
    return report_root() / f".folds-{run_id}" / f"fold-{fold.number}"


def _still_running(run_id: int) -> ValidationRun | None:
    run = ValidationRun.objects.select_related("model_version").get(pk=run_id)
    return run if run.status == RunStatus.RUNNING else None


def fold_train(run_id: int, fold_data: Mapping[str, Any]) -> dict[str, Any]:
    """Train one fold's model; returns the fold and where its model is, or the fold's error."""
    from models_registry.services.training import refuse_training_in_production

    fold = RefitFold.from_dict(fold_data)
    base = {"fold": fold.to_dict()}
    try:
        refuse_training_in_production()
        run = _still_running(run_id)
        if run is None:
            return {**base, "error": "the validation run is no longer running"}
        folder = fold_folder(run_id, fold)
        shutil.rmtree(folder, ignore_errors=True)
        model = _train_fold_model(run.model_version, fold, folder)
    except Exception as exc:  # every failure is this fold's error, named by the join
        logger.exception("training %s of validation run %s failed", fold.name, run_id)
        return {**base, "error": f"training failed: {type(exc).__name__}: {exc}"}
    return {**base, "model_dir": str(model), "error": None}


def _train_fold_model(version: ModelVersion, fold: RefitFold, folder: Path) -> Path:
    """The version's training configuration on the stored bars before the fold's train_stop."""
    from engine.training.refit import train_fold_model, training_start

    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    metadata = dict(version.metadata)
    read = read_candles(
        data_dir,
        version.symbol,
        version.interval,
        start=training_start(metadata),
        end=fold.train_stop,
    )
    if read.frame.empty:
        raise ValidationRefused(f"no stored candles before {fold.train_stop.isoformat()}")
    result = train_fold_model(
        _gaps_filled(version, read.frame, data_dir),
        _training_sentiment(version, data_dir),
        metadata,
        train_stop=fold.train_stop,
        output_dir=folder / "model",
        data_content_hash=read.content_hash,
    )
    return result.output_dir


def _gaps_filled(version: ModelVersion, frame: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """Stored candles with their gaps filled the way a re-fit trains on them."""
    policy = CandlePolicy(bad_rows="refuse", gaps="fill", max_fill=DEFAULT_MAX_FILL)
    where = f"{version.symbol} {version.interval} candles in {data_dir}"
    candles, _ = apply_candle_policy(frame, version.interval, policy, source=where)
    return candles


def _training_sentiment(version: ModelVersion, data_dir: Path) -> pd.Series | None:
    """The stored sentiment index when the version's model reads it, else None."""
    return (
        read_sentiment(data_dir).frame if (version.metadata or {}).get("uses_sentiment") else None
    )


def fold_trade(trained: Mapping[str, Any], run_id: int) -> dict[str, Any]:
    """The fold model's targets on its fold and its look-ahead finding, or the fold's error."""
    fold = RefitFold.from_dict(trained["fold"])
    if trained.get("error"):
        return dict(trained)
    base = {"fold": fold.to_dict()}
    try:
        run = _still_running(run_id)
        if run is None:
            return {**base, "error": "the validation run is no longer running"}
        trades, model = _trade_fold(run, fold, Path(trained["model_dir"]))
    except Exception as exc:
        logger.exception("trading %s of validation run %s failed", fold.name, run_id)
        return {**base, "error": f"trading failed: {type(exc).__name__}: {exc}"}
    return {
        **base,
        "error": None,
        "model": model,
        "index": [int(stamp.value // 10**9) for stamp in trades.targets.index],
        "targets": [float(value) for value in trades.targets.to_numpy()],
        "lookahead": trades.lookahead.to_dict() if trades.lookahead else None,
    }


def _trade_fold(
    run: ValidationRun, fold: RefitFold, model_dir: Path
) -> tuple[FoldTrades, dict[str, Any]]:
    from engine.backtest.runner import load_predictor

    version = run.model_version
    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    policy = validation_policy_for(version.name)
    predictor = load_predictor(model_dir)
    history = 2 * int(getattr(predictor, "required_history", 0))
    candles, _, _ = store_candles_read(
        data_dir, ModelSource.for_version(version), fold.start, fold.stop, history, DEFAULT_MAX_FILL
    )
    sentiment, _ = store_sentiment_read(data_dir, predictor)
    trades = fold_targets(
        fold,
        candles,
        predictor=predictor,
        sentiment=sentiment,
        strategy=run.strategy,
        fee_bps=float(policy["fee_bps"]),
        slippage_bps=float(policy["slippage_bps"]),
    )
    metadata = getattr(predictor, "metadata", None) or {}
    model = {
        "onnx_sha256": metadata.get("onnx_sha256"),
        "data_end": (metadata.get("data") or {}).get("end"),
        "out_of_sample_from": metadata.get("out_of_sample_from"),
    }
    return trades, model


# --- the reproduction job ---------------------------------------------------------------------


def fold_reproduce(run_id: int, last_fold: Mapping[str, Any]) -> dict[str, Any]:
    """Re-fit the version's recorded configuration on its recorded training bars and compare
    that model with its file on the last fold's bars. Never an error that fails the run: a
    re-fit that cannot be made is recorded as unchecked, with the reason."""
    from models_registry.services.training import refuse_training_in_production

    try:
        refuse_training_in_production()
        run = _still_running(run_id)
        if run is None:
            outcome = Reproduction.unchecked("the validation run is no longer running")
        else:
            folder = report_root() / f".folds-{run_id}" / REPRODUCTION
            shutil.rmtree(folder, ignore_errors=True)
            outcome = _reproduce(run, RefitFold.from_dict(last_fold), folder)
    except Exception as exc:  # recorded, never raised: the folds decide the run
        logger.exception("the reproduction check of validation run %s failed", run_id)
        outcome = Reproduction.unchecked(f"the re-fit failed: {type(exc).__name__}: {exc}")
    return {REPRODUCTION: outcome.to_dict()}


def _reproduce(run: ValidationRun, fold: RefitFold, folder: Path) -> Reproduction:
    from engine.backtest.runner import load_predictor
    from engine.training.refit import train_fold_model

    version = run.model_version
    bars = _recorded_training_bars(version)
    if isinstance(bars, Reproduction):
        return bars
    candles, sentiment, store_hash = bars
    refit = train_fold_model(
        candles,
        sentiment,
        dict(version.metadata),
        train_stop=candles.index[-1] + pd.Timedelta(microseconds=1),
        output_dir=folder / "model",
        data_content_hash=store_hash,
    )
    return _compare_on_fold(run, fold, load_predictor(refit.output_dir))


def _recorded_training_bars(
    version: ModelVersion,
) -> tuple[pd.DataFrame, pd.Series | None, str] | Reproduction:
    """The stored bars the version records it was trained on (gaps filled as training fills
    them), its sentiment and the store's hash; unchecked when they are not recorded or not
    the ones it records."""
    metadata = version.metadata or {}
    recorded = metadata.get("data") or {}
    if not recorded.get("start") or not recorded.get("end"):
        return Reproduction.unchecked("its metadata records no training bars (data.start/end)")
    data_start, data_end = pd.Timestamp(recorded["start"]), pd.Timestamp(recorded["end"])
    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    read = read_candles(
        data_dir,
        version.symbol,
        version.interval,
        start=data_start,
        end=data_end + interval_timedelta(version.interval),
    )
    candles = _gaps_filled(version, read.frame, data_dir)
    if candles.empty or recorded.get("content_hash") not in (
        read.content_hash,
        content_hash(candles),
    ):
        return Reproduction.unchecked(
            f"the stored bars from {data_start} to {data_end} are not the ones it records "
            "(content hash differs): the store changed since it was trained"
        )
    return candles, _training_sentiment(version, data_dir), read.content_hash


def _compare_on_fold(run: ValidationRun, fold: RefitFold, refit_model: Any) -> Reproduction:
    """The version's file against the re-fit, on the fold's bars at the policy's costs."""
    from engine.backtest.runner import load_predictor

    version = run.model_version
    source = ModelSource.for_version(version)
    if source.model_dir is None:
        return Reproduction.unchecked("the version has no artifact folder")
    file_model = load_predictor(source.model_dir)
    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    history = 2 * int(getattr(file_model, "required_history", 0))
    candles, _, _ = store_candles_read(
        data_dir, source, fold.start, fold.stop, history, DEFAULT_MAX_FILL
    )
    sentiment, _ = store_sentiment_read(data_dir, file_model)
    costs = validation_policy_for(version.name)
    return compare_to_refit(
        file_model,
        refit_model,
        candles,
        sentiment,
        start=fold.start,
        stop=fold.stop,
        strategy=run.strategy,
        fee_bps=float(costs["fee_bps"]),
        slippage_bps=float(costs["slippage_bps"]),
    )


def fold_results(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The folds' results, without the reproduction job's."""
    return [result for result in results if "fold" in result]


def reproduction_result(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    for result in results:
        if REPRODUCTION in result:
            return dict(result[REPRODUCTION])
    return Reproduction.unchecked("no reproduction job ran with these folds").to_dict()


# --- the join -----------------------------------------------------------------------------------


def fold_failures(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per failed fold, naming it; empty when every fold returned its trades."""
    failed = []
    for result in sorted(results, key=lambda r: int(r["fold"]["number"])):
        if result.get("error"):
            failed.append(f"{RefitFold.from_dict(result['fold']).name}: {result['error']}")
    return failed


def walk_forward_join(results: Sequence[Mapping[str, Any]], run_id: int) -> ValidationRun:
    """Judge the joined folds and record the run; any failed fold ends it as an error."""
    run = ValidationRun.objects.select_related("model_version").get(pk=run_id)
    if run.status != RunStatus.RUNNING:
        return run  # finished (an earlier delivery) or reconciled
    reproduction = reproduction_result(results)
    results = fold_results(results)
    failed = fold_failures(list(results))
    if failed:
        _discard_folds(run_id)
        return run_fail(
            run=run,
            error=f"walk-forward validation failed in {len(failed)} of {len(results)} folds: "
            + "; ".join(failed),
        )  # type: ignore[return-value]
    staged = staging_report_dir()
    try:
        computed, trials = _judge(run, list(results), staged, reproduction)
    except (*INPUT_ERRORS, StrategyError, DataError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        _discard_folds(run_id)
        return run_fail(run=run, error=f"walk-forward evidence could not be judged: {exc}")  # type: ignore[return-value]
    _move_folds_into(run_id, staged)
    with transaction.atomic():
        locked = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            shutil.rmtree(staged, ignore_errors=True)
            return locked
        for fold_trial in trials:
            ModelTrial.objects.create(**fold_trial)
        return validation_run_record(run=locked, computed=computed)


def _judge(
    run: ValidationRun,
    results: list[Mapping[str, Any]],
    staged: Path,
    reproduction: Mapping[str, Any],
) -> tuple[ValidationBacktest, list[dict[str, Any]]]:
    version = run.model_version
    source = ModelSource.for_version(version)
    # Read once: the costs, gates and plausibility all come from this one row.
    in_force = policy_in_force(version.name)
    policy = window_policy(in_force)
    gates = stage_gates(in_force, "validation")
    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    folds = [_fold_trades(result) for result in results]
    folds.sort(key=lambda trades: trades.fold.number)
    start, stop = folds[0].fold.start, folds[-1].fold.stop
    candles, store_hash, repair = store_candles_read(
        data_dir, source, start, stop, 0, DEFAULT_MAX_FILL
    )
    counted = trials_counted_for_refit(version, start, stop, folds=len(folds))
    config = SimulationConfig(
        fee_bps=float(policy["fee_bps"]), slippage_bps=float(policy["slippage_bps"])
    )
    result, judged = judge_refit_evidence(
        candles,
        folds,
        config,
        gates=gates,
        trials=counted.trials,
        trial_sharpes=counted.sharpes,
        benchmark=str(policy["dsr_benchmark"]),
    )
    fold_sharpes = _fold_sharpes(result, folds)
    reasons = fold_policy_reasons(run, in_force, gates)
    backtest = BacktestRun(
        strategy=run.strategy,
        window_start=result.equity.index[0],
        window_end=result.equity.index[-1],
        sample_status=OUT_OF_SAMPLE,
        config={**config.to_dict(), "refit_folds": len(folds)},
        result=result,
        parts=[],
        gate_results=judged,
        model={"name": version.name, "version": version.version, "refit_folds": len(folds)},
        data_content_hash=store_hash,
        warmup_bars_in_window=0,
    )
    stem = f"{run.strategy}_refit_{start:%Y%m%d}_{stop:%Y%m%d}"
    title = f"{run.strategy}: {len(folds)} re-fitted folds, {start:%Y-%m-%d} to {stop:%Y-%m-%d}"
    backtest.files = write_report(result, staged, stem, backtest.to_dict(), title)
    files = {
        **backtest.files,
        "equity_curve": write_equity_curve(backtest, staged / EQUITY_CURVE_FILE),
    }
    options = ValidationOptions(strategy=run.strategy)
    record = {
        **options.to_config(),
        "symbol": version.symbol,
        "interval": version.interval,
        "gap_policy": {"fill_at_most_bars": DEFAULT_MAX_FILL, **repair},
        "gates": dict(gates),
        "engine": backtest.config,
        "policy": dict(policy),
        "policy_window": [start.isoformat(), stop.isoformat()],
        "trials": {**counted.to_dict(), "fold_models": len(folds)},
        CONFIG_KEY: {
            "folds": [
                {**trades.fold.to_dict(), **_fold_summary(results, trades.fold.number)}
                for trades in folds
            ],
            "fold_sharpes_per_bar": fold_sharpes,
            "policy": ((run.config or {}).get(CONFIG_KEY) or {}).get("policy"),
            REPRODUCTION: dict(reproduction),
        },
    }
    computed = ValidationBacktest.judged_under(
        backtest,
        options,
        store_hash,
        record,
        staged,
        files,
        in_force=in_force,
        exploratory_reasons=reasons,
    )
    trials = [
        {
            "model_name": version.name,
            "kind": ModelTrial.KIND_TRAINING,
            "model_version": version,
            "window_start": trades.fold.start.to_pydatetime(),
            "window_end": trades.fold.stop.to_pydatetime(),
            # A fold's Sharpe is over its own bars, not the evidence's: kept in the detail,
            # not given to later DSRs as a trial's spread (it would mix two sample lengths).
            "sharpe_per_bar": None,
            "detail": {
                "fold": trades.fold.number,
                "of": trades.fold.of,
                "validation_run": run.pk,
                "train_stop": trades.fold.train_stop.isoformat(),
                "fold_sharpe_per_bar": fold_sharpes.get(str(trades.fold.number)),
            },
        }
        for trades in folds
    ]
    return computed, trials


def fold_policy_reasons(run: ValidationRun, in_force: Any, gates: Mapping[str, Any]) -> list[str]:
    """Why the joined folds are not judged by the policy in force: this process's settings
    disagree with it, or the policy changed while the folds ran (they were planned under
    another one: its fold count, length or costs may differ)."""
    reasons = policy_reasons(run.model_version.name, in_force, gates)
    planned = ((run.config or {}).get(CONFIG_KEY) or {}).get("policy") or {}
    if planned.get("hash") and planned["hash"] != in_force.content_hash:
        reasons.append(
            f"the policy changed while the folds ran: planned under {planned.get('name')}, "
            f"judged under {policy_name(in_force)}"
        )
    return reasons


def _fold_trades(result: Mapping[str, Any]) -> FoldTrades:
    fold = RefitFold.from_dict(result["fold"])
    index = pd.to_datetime(pd.Series(result["index"], dtype="int64"), unit="s", utc=True)
    targets = pd.Series(result["targets"], index=pd.DatetimeIndex(index), dtype=float)
    finding = result.get("lookahead")
    return FoldTrades(fold, targets, LookaheadFinding(**finding) if finding else None)


def _fold_summary(results: list[Mapping[str, Any]], number: int) -> dict[str, Any]:
    for result in results:
        if int(result["fold"]["number"]) == number:
            return {"model": result.get("model"), "lookahead": result.get("lookahead")}
    return {}


def _fold_sharpes(result: Any, folds: list[FoldTrades]) -> dict[str, float | None]:
    from engine.backtest.deflated import return_moments
    from engine.backtest.runner import excess_returns

    excess = pd.Series(excess_returns(result), index=result.equity.index)
    sharpes: dict[str, float | None] = {}
    for trades in folds:
        moments = return_moments(excess.loc[trades.targets.index].to_numpy())
        sharpes[str(trades.fold.number)] = None if isinstance(moments, str) else moments.sharpe
    return sharpes


def _move_folds_into(run_id: int, staged: Path) -> None:
    """The fold models are part of the evidence: kept with the run's report."""
    source = report_root() / f".folds-{run_id}"
    if source.exists():
        staged.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staged / FOLDS_FOLDER, ignore_errors=True)
        source.rename(staged / FOLDS_FOLDER)


def _discard_folds(run_id: int) -> None:
    shutil.rmtree(report_root() / f".folds-{run_id}", ignore_errors=True)


def walk_forward_chord_failed(run_id: int, reason: str) -> None:
    """The chord itself failed (not a fold: those return their errors): end the run."""
    run = ValidationRun.objects.get(pk=run_id)
    _discard_folds(run_id)
    run_fail(run=run, error=f"walk-forward validation failed: {reason}")
