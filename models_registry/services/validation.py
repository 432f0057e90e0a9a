"""One concern: validation backtests of registry versions, from window to recorded outcome.

Validation backtests of registry versions: data from the store, the engine's backtest, a record.

``validation_execute(run)`` is what the ``run_validation`` task calls: it backtests the
run's version on bars the model never saw and records the outcome through
``runs.validation_run_complete`` (which validates a passing version), or records why it
could not run through ``runs.run_fail``. The ``run_backtest`` command uses the same
pieces: ``validation_backtest`` computes without touching the database, so a bad input
is refused before any row exists.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from engine.backtest import BacktestError, BacktestRun, run_backtest
from engine.backtest.guards import policy_window_start
from engine.backtest.report import json_safe
from engine.data import (
    DataError,
    StoreEmptyError,
    ValidationPolicy,
    apply_candle_policy,
    interval_timedelta,
    read_candles,
    read_sentiment,
    stored_candle_range,
)
from engine.features.pipeline import FeatureError
from engine.strategies import STRATEGIES, Predictor
from models_registry.gates import gates_for
from models_registry.models import ModelState, ModelVersion, RunStatus, ValidationRun
from models_registry.policy import (
    CostPolicy,
    plausibility_gate,
    plausibility_warnings,
    policy_in_force,
    policy_name,
    policy_reference,
    settings_disagreement,
    stage_gates,
    window_policy,
)
from models_registry.selectors import EQUITY_CURVE_FILE
from models_registry.services import lifecycle
from models_registry.services.audit import audit_event_record
from models_registry.services.model_versions import version_dir
from models_registry.services.runs import (
    RunOutcome,
    run_fail,
    run_mark_running,
    validation_run_complete,
)
from models_registry.services.trials import TrialCount, trials_for_window

DEFAULT_DAYS = 90  # the shipped policy's; see models_registry.gates.DEFAULT_VALIDATION_POLICY
# The store has one known missing hour; a few missing bars are filled forward (and recorded),
# a longer hole is refused by the model's no-gap check rather than papered over.
DEFAULT_MAX_FILL = 3
REPORT_FOLDER = "validation"
# The run's equity and buy-and-hold curves as JSON, written once with the report, so a page
# that overlays curves (Compare) reads them instead of re-running or re-plotting per request.
COMPARISON_REASON = "a comparison run (admin Compare): exploratory by design, it moves no version"
# Metric names the registry (and the admin page) reads, from the engine's names.
METRIC_ALIASES = {"trades": "n_trades", "bars": "n_bars"}

Progress = Callable[[str], None]


class ValidationRefused(Exception):
    """The backtest could not be computed (bad options, data or model); the message says why."""


# Errors a caller's input can cause; anything else is a bug and is left to propagate.
INPUT_ERRORS = (ValidationRefused, BacktestError, DataError, FeatureError)


@dataclass(frozen=True)
class ValidationOptions:
    """What a validation run was asked to do; stored in ``ValidationRun.config``."""

    strategy: str = "ml_basic"
    # None means "the policy's" (models_registry.gates.validation_policy_for); any other
    # value makes a run exploratory unless it equals the policy (or costs more).
    days: float | None = None
    start: str | None = None
    end: str | None = None
    fee_bps: float | None = None
    slippage_bps: float | None = None
    walk_forward: int = 1
    allow_in_sample: bool = False
    max_fill: int = DEFAULT_MAX_FILL
    # A run the admin's Compare queued: exploratory whatever its window and costs, so a
    # comparison never validates a version (models_registry/services/comparison.py).
    comparison: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ValidationOptions:
        """Options from a run's config; unknown keys and bad values are refused by name."""
        config = dict(config or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValidationRefused(
                f"unknown validation option(s) {unknown}; known: {sorted(known)}"
            )
        options = cls(**{k: v for k, v in config.items() if v is not None})
        options.check()
        return options

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValidationRefused(
                f"unknown strategy {self.strategy!r}; known strategies: "
                f"{', '.join(sorted(STRATEGIES))}"
            )
        for name in ("days", "fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValidationRefused(f"{name} must be a finite number, got {value!r}")
        if self.days is not None and self.days <= 0:
            raise ValidationRefused(f"days must be more than 0, got {self.days}")
        if (self.fee_bps or 0) < 0 or (self.slippage_bps or 0) < 0:
            raise ValidationRefused(
                f"fees and slippage cannot be negative: fee_bps={self.fee_bps}, "
                f"slippage_bps={self.slippage_bps}"
            )
        if not isinstance(self.walk_forward, int) or self.walk_forward < 1:
            raise ValidationRefused(f"walk_forward must be 1 or more, got {self.walk_forward!r}")
        if not isinstance(self.max_fill, int) or self.max_fill < 0:
            raise ValidationRefused(f"max_fill must be 0 or more, got {self.max_fill!r}")
        if not isinstance(self.comparison, bool):
            raise ValidationRefused(f"comparison must be true or false, got {self.comparison!r}")
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                _utc(getattr(self, name), name)

    def check_recordable(self) -> None:
        """A registry run must exercise the version's model: a baseline would pass for free."""
        self.check()
        if not STRATEGIES[self.strategy].needs_model:
            model_strategies = sorted(n for n, spec in STRATEGIES.items() if spec.needs_model)
            raise ValidationRefused(
                f"strategy {self.strategy!r} does not use the model, so it cannot validate a "
                f"version; use {', '.join(model_strategies)} (or --no-db for a plain report)"
            )

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyRun:
    """The costs and window a run used, and why it is exploratory (empty: a policy run)."""

    fee_bps: float
    slippage_bps: float
    window_start: pd.Timestamp
    window_stop: pd.Timestamp
    policy: dict[str, Any]
    policy_window: tuple[pd.Timestamp, pd.Timestamp] | None
    exploratory_reasons: list[str]

    @property
    def exploratory(self) -> bool:
        return bool(self.exploratory_reasons)


def cost_reasons(options: ValidationOptions, policy: Mapping[str, Any]) -> list[str]:
    """A cost below the policy's makes a run exploratory; a higher one is only stricter."""
    required = CostPolicy(float(policy["fee_bps"]), float(policy["slippage_bps"]))
    given = CostPolicy(
        required.fee_bps if options.fee_bps is None else float(options.fee_bps),
        required.slippage_bps if options.slippage_bps is None else float(options.slippage_bps),
    )
    return given.below(required)


def single_window_reasons(policy: Mapping[str, Any]) -> list[str]:
    """Under a policy that judges on re-fitted folds (#28), one window is exploratory: only
    the fold evidence (models_registry/services/walk_forward.py) may validate a version."""
    folds = int(policy.get("refit_folds") or 0)
    if folds <= 0:
        return []
    return [f"the policy judges on {folds} re-fitted walk-forward folds, not on one window"]


@dataclass
class ModelSource:
    """Where a backtest's model comes from: a folder of artifacts (a registry version's or not)."""

    model_dir: Path | None
    metadata: dict[str, Any] | None
    symbol: str
    interval: str
    # A registry version's stated first unseen bar: the policy window starts there.
    first_unseen_at: pd.Timestamp | None = None
    # The registry version itself: its recorded trials are counted for the DSR.
    version: ModelVersion | None = None

    @classmethod
    def for_version(cls, version: ModelVersion) -> ModelSource:
        first_unseen = pd.Timestamp(version.first_unseen_at) if version.first_unseen_at else None
        return cls(
            version_dir(version),
            dict(version.metadata),
            version.symbol,
            version.interval,
            first_unseen,
            version,
        )

    @property
    def model_name(self) -> str:
        """The name whose gates and policy apply (a plain baseline: the symbol's default)."""
        return str((self.metadata or {}).get("name") or f"{self.symbol.lower()}_sentiment")


@dataclass
class ValidationBacktest:
    """A computed backtest and the data facts a record needs."""

    run: BacktestRun
    options: ValidationOptions
    data_content_hash: str
    config: dict[str, Any]
    report_dir: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    exploratory_reasons: list[str] = field(default_factory=list)
    # The policy the run was judged under: {"id", "label", "scope", "number", "hash"}.
    policy_ref: dict[str, Any] = field(default_factory=dict)
    # Gates the policy adds beyond the engine's (the plausibility gate, where it is one).
    extra_gates: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def judged_under(
        cls,
        run: BacktestRun,
        options: ValidationOptions,
        data_content_hash: str,
        config: dict[str, Any],
        report_dir: Path | None,
        files: dict[str, Path],
        *,
        in_force: Any,
        exploratory_reasons: list[str],
    ) -> ValidationBacktest:
        """A computed run with what the policy in force adds, in one place for a single window
        and for joined folds: its reference, the plausibility warnings and the plausibility gate
        where the policy makes it one, and why the run is exploratory."""
        recorded = {
            **config,
            "policy_in_force": policy_reference(in_force),
            "plausibility": plausibility_warnings(run.metrics, in_force),
            "exploratory_reasons": exploratory_reasons,
        }
        extra = plausibility_gate(run.metrics, in_force)
        return cls(
            run,
            options,
            data_content_hash,
            json_safe(recorded),
            report_dir,
            files,
            exploratory_reasons=exploratory_reasons,
            policy_ref=policy_reference(in_force),
            extra_gates=[extra] if extra is not None else [],
        )

    @property
    def exploratory(self) -> bool:
        return bool(self.exploratory_reasons)

    @property
    def in_sample(self) -> bool:
        return self.run.in_sample

    @property
    def passed(self) -> bool:
        return self.run.passed and not self.run.in_sample


# --- computing (no database writes) ---------------------------------------------------------


def validation_backtest(
    *,
    source: ModelSource,
    options: ValidationOptions,
    gates: Mapping[str, Any],
    output_dir: Path | None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
    judge_window: bool = True,
) -> ValidationBacktest:
    """Backtest ``source`` on stored data as ``options`` say; raises ValidationRefused.

    Writes the report files into ``output_dir`` (when given) and nothing when it refuses.
    """
    options.check()
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    try:
        predictor = _load_predictor(source, options)
        metadata = getattr(predictor, "metadata", None) or source.metadata
        # Read once: the window, costs, gates and plausibility all come from this one row.
        in_force = policy_in_force(source.model_name)
        policy = window_policy(in_force)
        window_start, window_end = choose_window(
            data_dir,
            source.symbol,
            source.interval,
            metadata,
            options,
            policy,
            first_unseen=source.first_unseen_at,
        )
        check_window_covers_the_horizon(metadata, window_start, window_end, source.interval)
        chosen = policy_run(
            data_dir, source, metadata, options, policy, (window_start, window_end), judge_window
        )
        counted = trials_counted(source, window_start, window_end)
        history_bars = _history_bars(predictor)
        candles, store_hash, repair = store_candles_read(
            data_dir, source, window_start, window_end, history_bars, options.max_fill
        )
        sentiment, sentiment_hash = store_sentiment_read(data_dir, predictor)
        run = run_backtest(
            options.strategy,
            candles,
            sentiment=sentiment,
            predictor=predictor,
            metadata=metadata,
            start=window_start,
            fee_bps=chosen.fee_bps,
            slippage_bps=chosen.slippage_bps,
            walk_forward=options.walk_forward,
            allow_in_sample=options.allow_in_sample,
            gates=gates,
            trials=counted.trials,
            trial_sharpes=counted.sharpes,
            dsr_benchmark=str(policy["dsr_benchmark"]),
            data_content_hash=store_hash,
            output_dir=output_dir,
            progress=progress,
        )
    except ValidationRefused:
        raise
    except INPUT_ERRORS as exc:
        raise ValidationRefused(str(exc)) from exc
    # The service never skips the look-ahead check; a run that did is never a policy run.
    reasons = [
        *policy_reasons(source.model_name, in_force, gates),
        *chosen.exploratory_reasons,
        *run.exploratory_reasons,
    ]
    if options.comparison:
        reasons.insert(0, COMPARISON_REASON)
    files = dict(run.files)
    if output_dir is not None:
        files["equity_curve"] = write_equity_curve(run, Path(output_dir) / EQUITY_CURVE_FILE)
    config = {
        **options.to_config(),
        "symbol": source.symbol,
        "interval": source.interval,
        "gap_policy": {"fill_at_most_bars": options.max_fill, **repair},
        "sentiment_content_hash": sentiment_hash,
        "gates": dict(gates),
        "engine": run.config,
        "policy": chosen.policy,
        "policy_window": (
            [chosen.policy_window[0].isoformat(), chosen.policy_window[1].isoformat()]
            if chosen.policy_window
            else None
        ),
        "lookahead": run.lookahead,
        "trials": counted.to_dict(),
    }
    return ValidationBacktest.judged_under(
        run,
        options,
        store_hash,
        config,
        output_dir,
        files,
        in_force=in_force,
        exploratory_reasons=reasons,
    )


def policy_reasons(model_name: str, in_force: Any, gates: Mapping[str, Any]) -> list[str]:
    """Why a run is not judged by the policy in force: this process's settings, other gates."""
    reasons = settings_disagreement(model_name, in_force)
    if json_safe(dict(gates)) != json_safe(stage_gates(in_force, "validation")):
        reasons.append(
            f"the gates applied are not the validation gates of the policy in force "
            f"({policy_name(in_force)})"
        )
    return reasons


def write_equity_curve(run: BacktestRun, path: Path) -> Path:
    """The strategy's and buy-and-hold's equity per bar, as fractions of the initial equity."""
    initial = float(run.result.config.initial_equity)
    equity = run.result.equity
    hold = run.result.buy_and_hold_equity
    payload = {
        "index": [stamp.isoformat() for stamp in pd.DatetimeIndex(equity.index)],
        "strategy": [round(float(v) / initial, 6) for v in equity.to_numpy()],
        "buy_and_hold": (
            [round(float(v) / initial, 6) for v in hold.reindex(equity.index).to_numpy()]
            if hold is not None
            else None
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload)))
    return path


def trials_counted(source: ModelSource, start: pd.Timestamp, stop: pd.Timestamp) -> TrialCount:
    """The attempts this run answers for; a model outside the registry has only itself.

    Such a run (``run_backtest --no-db --model-path``) is a report that moves nothing.
    """
    if source.version is None:
        return TrialCount(1, [], {})
    return trials_for_window(
        model_name=source.version.name,
        version=source.version,
        start=start.to_pydatetime(),
        stop=stop.to_pydatetime(),
    )


def policy_run(
    data_dir: Path,
    source: ModelSource,
    metadata: Mapping[str, Any] | None,
    options: ValidationOptions,
    policy: Mapping[str, Any],
    window: tuple[pd.Timestamp, pd.Timestamp],
    judge_window: bool,
) -> PolicyRun:
    """Resolve the run's costs and compare it with the policy; differences are reasons."""
    reasons = cost_reasons(options, policy)
    policy_window = None
    if judge_window:
        reasons.extend(single_window_reasons(policy))
        policy_only = ValidationOptions(strategy=options.strategy)
        try:
            policy_window = choose_window(
                data_dir,
                source.symbol,
                source.interval,
                metadata,
                policy_only,
                policy,
                first_unseen=source.first_unseen_at,
            )
        except ValidationRefused as exc:
            reasons.append(f"the policy window cannot be backtested ({exc})")
        if policy_window is not None and window != policy_window:
            reasons.append(
                f"window {window[0].isoformat()} to {window[1].isoformat()} is not the policy "
                f"window {policy_window[0].isoformat()} to {policy_window[1].isoformat()}"
            )
    return PolicyRun(
        fee_bps=float(policy["fee_bps"] if options.fee_bps is None else options.fee_bps),
        slippage_bps=float(
            policy["slippage_bps"] if options.slippage_bps is None else options.slippage_bps
        ),
        window_start=window[0],
        window_stop=window[1],
        policy=dict(policy),
        policy_window=policy_window,
        exploratory_reasons=reasons,
    )


def _load_predictor(source: ModelSource, options: ValidationOptions) -> Predictor | None:
    if not STRATEGIES[options.strategy].needs_model:
        return None
    if source.model_dir is None:
        raise ValidationRefused(f"strategy {options.strategy!r} needs a model")
    from engine.backtest.runner import load_predictor  # ONNX Runtime only when a model is used

    return load_predictor(source.model_dir)


def _history_bars(predictor: Predictor | None) -> int:
    # Twice what one prediction needs, so the first window bar already has a prediction
    # even after a filled gap; more history would only slow the run down.
    return 2 * int(getattr(predictor, "required_history", 0))


def choose_window(
    data_dir: Path,
    symbol: str,
    interval: str,
    metadata: Mapping[str, Any] | None,
    options: ValidationOptions,
    policy: Mapping[str, Any],
    *,
    first_unseen: pd.Timestamp | None = None,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the window: explicit bounds, else ``days`` from the policy start.

    The policy start is the version's ``first_unseen_at`` (``first_unseen``), else one bar
    after the last bar training or selection touched, computed from the metadata
    (``engine.backtest.guards.policy_window_start``); ``days`` and the cap ``end`` default
    to the policy's. Clipped to the stored data. A model without a known out-of-sample
    start (or no model) gets the last ``days`` days.
    """
    stored = stored_candle_range(data_dir, symbol, interval)
    if stored is None:
        raise ValidationRefused(
            f"no {symbol} {interval} candles stored in {data_dir}: import or fetch them first"
        )
    step = interval_timedelta(interval)
    data_start, data_stop = stored[0], stored[1] + step
    span = pd.Timedelta(days=float(policy["days"] if options.days is None else options.days))
    if first_unseen is None and metadata:
        first_unseen = policy_window_start(metadata, step)
    if policy.get("end"):
        data_stop = min(data_stop, _utc(policy["end"], "policy end"))
    if options.start is not None:
        start = _utc(options.start, "start")
        stop = _utc(options.end, "end") if options.end is not None else start + span
    elif options.end is not None:
        stop = _utc(options.end, "end")
        start = stop - span
    elif first_unseen is not None:
        start = first_unseen
        stop = start + span
    else:
        stop = data_stop
        start = stop - span
    start, stop = max(start, data_start), min(stop, data_stop)
    if stop <= start:
        raise ValidationRefused(
            f"no data to backtest: the window {start.isoformat()} to {stop.isoformat()} holds "
            f"no stored {symbol} {interval} candles (stored: {data_start.isoformat()} to "
            f"{stored[1].isoformat()})"
        )
    return start, stop


def check_window_covers_the_horizon(
    metadata: Mapping[str, Any] | None,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    interval: str,
) -> None:
    """A window no longer than the model's horizon cannot see one prediction come true."""
    horizon = (metadata or {}).get("horizon")
    if not isinstance(horizon, int) or isinstance(horizon, bool):
        return
    bars = int((stop - start) / interval_timedelta(interval))
    if bars <= horizon:
        raise ValidationRefused(
            f"the window {start.isoformat()} to {stop.isoformat()} holds {bars} {interval} bar(s), "
            f"not longer than the model's horizon of {horizon} bars: lengthen --days "
            "(or --start/--end)"
        )


def store_candles_read(
    data_dir: Path,
    source: ModelSource,
    window_start: pd.Timestamp,
    window_stop: pd.Timestamp,
    history_bars: int,
    max_fill: int,
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    step = interval_timedelta(source.interval)
    read = read_candles(
        data_dir,
        source.symbol,
        source.interval,
        start=window_start - history_bars * step,
        end=window_stop,
    )
    if read.frame.loc[window_start:].empty:
        raise ValidationRefused(
            f"no {source.symbol} {source.interval} candles stored between "
            f"{window_start.isoformat()} and {window_stop.isoformat()}"
        )
    policy = ValidationPolicy(bad_rows="refuse", gaps="fill", max_fill=max_fill)
    where = f"{source.symbol} {source.interval} candles in {data_dir}"
    candles, report = apply_candle_policy(read.frame, source.interval, policy, source=where)
    gaps = report.issues["gaps"]
    repair = {
        "filled_rows": report.filled_rows,
        "gaps": gaps.count,
        "first_gaps_at": gaps.first,
    }
    return candles, read.content_hash, repair


def store_sentiment_read(
    data_dir: Path, predictor: Predictor | None
) -> tuple[pd.Series | None, str | None]:
    if predictor is None or not getattr(predictor, "uses_sentiment", False):
        return None, None
    try:
        read = read_sentiment(data_dir)
    except StoreEmptyError as exc:
        raise ValidationRefused(
            f"the model uses Fear & Greed sentiment, but none is stored: {exc}"
        ) from exc
    return read.frame, read.content_hash


def _utc(value: Any, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValidationRefused(f"{name} is not a date and time: {value!r}") from exc
    if pd.isna(stamp):
        raise ValidationRefused(f"{name} is not a date and time: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# --- recording --------------------------------------------------------------------------------


def registry_metrics(backtest: BacktestRun) -> dict[str, Any]:
    """The engine's metrics without the baseline, with the names the registry reads."""
    metrics = {k: v for k, v in backtest.metrics.items() if k != "buy_and_hold"}
    for alias, engine_name in METRIC_ALIASES.items():
        metrics[alias] = metrics.get(engine_name)
    metrics["sample_status"] = backtest.sample_status
    metrics["warmup_bars_in_window"] = backtest.warmup_bars_in_window
    if backtest.parts:
        metrics["walk_forward"] = [part.to_dict() for part in backtest.parts]
    return json_safe(metrics)


def benchmark_metrics(backtest: BacktestRun) -> dict[str, Any]:
    hold = dict(backtest.metrics.get("buy_and_hold") or {})
    for alias, engine_name in METRIC_ALIASES.items():
        hold[alias] = hold.get(engine_name)
    return json_safe(hold)


def gate_dicts(backtest: BacktestRun) -> list[dict[str, Any]]:
    return json_safe(
        [
            {
                "name": g.name,
                "passed": bool(g.passed),
                "value": g.value,
                "threshold": g.threshold,
                "metric": g.metric,
                "detail": g.detail,
            }
            for g in backtest.gate_results
        ]
    )


def validation_outcome(computed: ValidationBacktest, report_dir: str) -> RunOutcome:
    run = computed.run
    plot = computed.files.get("plot")
    gates = [*gate_dicts(run), *computed.extra_gates]
    return RunOutcome(
        window_start=run.window_start.to_pydatetime(),
        window_end=run.window_end.to_pydatetime(),
        metrics=registry_metrics(run),
        gate_results=gates,
        passed=computed.passed,
        data_content_hash=computed.data_content_hash,
        benchmark_metrics=benchmark_metrics(run),
        config=computed.config,
        in_sample=computed.in_sample,
        exploratory=computed.exploratory,
        exploratory_reasons=list(computed.exploratory_reasons),
        report_dir=report_dir,
        plot_file=plot.name if plot else "",
        policy_id=computed.policy_ref.get("id"),
        policy_hash=str(computed.policy_ref.get("hash") or ""),
    )


def report_root() -> Path:
    return Path(settings.MEDIA_ROOT) / REPORT_FOLDER


def staging_report_dir() -> Path:
    """A fresh folder for a report before its run is known; see ``validation_report_publish``."""
    return report_root() / f".incoming-{uuid.uuid4().hex}"


def validation_report_publish(
    staged: Path | None, computed: ValidationBacktest, run: ValidationRun
) -> str:
    """Move the report into ``validation/<run id>/``; returns it relative to MEDIA_ROOT."""
    if staged is None or not staged.exists():
        return ""
    final = report_root() / str(run.pk)
    if final.exists():
        shutil.rmtree(final)  # left by an earlier delivery of the same run that died mid-way
    staged.rename(final)
    computed.files = {key: final / path.name for key, path in computed.files.items()}
    return str(final.relative_to(settings.MEDIA_ROOT))


def validation_run_record(*, run: ValidationRun, computed: ValidationBacktest) -> ValidationRun:
    report_dir = validation_report_publish(computed.report_dir, computed, run)
    return validation_run_complete(run=run, outcome=validation_outcome(computed, report_dir))


def validation_execute(run: ValidationRun, *, progress: Progress | None = None) -> ValidationRun:
    """Backtest a claimed run's version and record the outcome (or the reason it could not run)."""
    try:
        options = ValidationOptions.from_config(
            {**_options_part(run.config), "strategy": run.strategy}
        )
        options.check_recordable()
    except ValidationRefused as exc:
        run_fail(run=run, error=str(exc))
        return ValidationRun.objects.get(pk=run.pk)
    computed = validation_backtest_for_run(run, options=options, progress=progress)
    if computed is None:
        return ValidationRun.objects.get(pk=run.pk)
    return validation_run_record(run=run, computed=computed)


def validation_backtest_for_run(
    run: ValidationRun,
    *,
    options: ValidationOptions,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> ValidationBacktest | None:
    """The run's backtest in a staging folder; None (and the run failed, saying why) if refused."""
    version = run.model_version
    staged = staging_report_dir()
    try:
        return validation_backtest(
            source=ModelSource.for_version(version),
            options=options,
            gates=gates_for(version.name, "validation"),
            output_dir=staged,
            data_dir=data_dir,
            progress=progress,
            # A scheduled re-validation judges later bars by design; its costs stay policy.
            judge_window=run.kind == ValidationRun.KIND_BACKTEST,
        )
    except ValidationRefused as exc:
        shutil.rmtree(staged, ignore_errors=True)
        run_fail(run=run, error=str(exc))
        return None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _options_part(config: Mapping[str, Any] | None) -> dict[str, Any]:
    # A recorded run's config also holds what the run found (symbol, gap report, ...):
    # only the requested options are read back.
    known = set(ValidationOptions.__dataclass_fields__)
    return {k: v for k, v in (config or {}).items() if k in known}


def validation_run_create_inline(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    options: ValidationOptions,
) -> ValidationRun:
    """A run executed right here (the ``run_backtest`` command), claimed and not queued."""
    if model_version.state != ModelState.TRAINED:
        raise lifecycle.TransitionRefused(
            f"{model_version} is {model_version.get_state_display().lower()}; "
            "only a trained version is validated."
        )
    actor = requested_by if requested_by and requested_by.is_authenticated else None
    with transaction.atomic():
        run = ValidationRun.objects.create(
            model_version=model_version,
            strategy=options.strategy,
            requested_by=actor,
            config=options.to_config(),
        )
        audit_event_record(
            event_type="validation_requested",
            actor=actor,
            obj=run,
            data={"version": model_version.pk, "inline": True},
        )
    if not run_mark_running(run):
        raise AssertionError(f"validation run {run.pk} was claimed by someone else")
    run.status = RunStatus.RUNNING
    return run


def validation_run_inline(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    options: ValidationOptions,
    progress: Progress | None = None,
) -> ValidationRun:
    """Compute first, then record: a refused backtest leaves no run behind."""
    if model_version.state != ModelState.TRAINED:
        raise lifecycle.TransitionRefused(
            f"{model_version} is {model_version.get_state_display().lower()}; "
            "only a trained version is validated."
        )
    options.check_recordable()
    staged = staging_report_dir()
    try:
        computed = validation_backtest(
            source=ModelSource.for_version(model_version),
            options=options,
            gates=gates_for(model_version.name, "validation"),
            output_dir=staged,
            progress=progress,
        )
        run = validation_run_create_inline(
            model_version=model_version, requested_by=requested_by, options=options
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return validation_run_record(run=run, computed=computed)
