"""One concern: paper trading runs of registry versions, from period to recorded outcome.

Paper trading runs of registry versions: replay unseen bars through the engine, compare, record.

``paper_execute(run)`` is what the ``run_paper_trading`` task (and the ``paper_trade_version``
command) calls on a claimed run. The period is the bars after both the model's training data
and its passing validation window, ``days`` long and clipped to the store. Those bars go
through the engine's own paper loop (``engine.live.run_paper_replay``, journal on disk) and,
separately, through the backtester with the same costs; the two must agree trade for trade.
The outcome (figures, divergence, gates, an equity chart) is recorded by
``runs.paper_run_complete``, which moves a passing version to ``paper_tested``; a run that
cannot produce figures is recorded by ``runs.run_fail`` and the version stays where it was.

The options of a run live in its ``paper_run_requested`` audit event (a paper run row has no
config field): ``paper_options_of(run)`` reads them back.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from engine.backtest import SimulationConfig, compute_metrics, simulate
from engine.backtest.guards import out_of_sample_start
from engine.backtest.report import json_safe
from engine.data import interval_timedelta, stored_candle_range
from engine.inference import ModelCheckError, OnnxPredictor
from engine.live import PaperRunResult, run_paper_replay
from engine.live.journal import JournalError
from engine.strategies import get_strategy
from models_registry.models import ModelState, ModelVersion, PaperTradingRun, RunStatus
from models_registry.policy import (
    CostPolicy,
    policy_in_force,
    policy_reference,
    settings_disagreement,
)
from models_registry.services import lifecycle
from models_registry.services.audit import audit_event_record
from models_registry.services.model_versions import version_dir
from models_registry.services.runs import (
    RunOutcome,
    paper_run_complete,
    run_fail,
    run_mark_running,
)
from models_registry.services.validation import (
    DEFAULT_MAX_FILL,
    INPUT_ERRORS,
    ModelSource,
    store_candles_read,
    store_sentiment_read,
)

DEFAULT_DAYS = 14
DEFAULT_INITIAL_CASH = 10_000.0
STRATEGY = "ml_basic"
REPORT_FOLDER = "paper"
PLOT_FILE = "paper_equity.png"
# One decision and the next bar's open to fill it: anything shorter cannot trade at all.
MIN_PERIOD_BARS = 2
# Paper and backtest fills are the same arithmetic on the same numbers; beyond rounding
# noise a difference is a real divergence.
PRICE_RTOL = 1e-9
REQUEST_EVENT = "paper_run_requested"
# Keys a request event holds besides the options.
# A finished run's config also holds what it was judged under (not options to read back).
REQUEST_BOOKKEEPING = frozenset({"version", "inline", "policy_in_force", "exploratory_reasons"})
KNOWN_GATES = ("min_bars", "max_drawdown", "max_divergence")


class PaperRefused(Exception):
    """The paper run cannot be computed (options, data, model); the message says why."""


# Errors bad input can cause (a broken model file, missing data, a dirty journal folder);
# anything else is a bug and propagates after the run is marked as failed.
PAPER_INPUT_ERRORS = (PaperRefused, ModelCheckError, JournalError, *INPUT_ERRORS)


@dataclass(frozen=True)
class PaperOptions:
    """What a paper run was asked to do; recorded in its request event and its metrics."""

    days: float = DEFAULT_DAYS
    # None: the costs of the policy in force (models_registry.policy.CostPolicy). Lower ones
    # make the run exploratory: it is recorded and never moves the version.
    fee_bps: float | None = None
    slippage_bps: float | None = None
    initial_cash: float = DEFAULT_INITIAL_CASH
    max_fill: int = DEFAULT_MAX_FILL

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> PaperOptions:
        """Options from a request's data; unknown keys and bad values are refused by name."""
        config = {k: v for k, v in (config or {}).items() if k not in REQUEST_BOOKKEEPING}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise PaperRefused(f"unknown paper option(s) {unknown}; known: {sorted(known)}")
        options = cls(**{k: v for k, v in config.items() if v is not None})
        options.check()
        return options

    def check(self) -> None:
        for name in ("days", "fee_bps", "slippage_bps", "initial_cash"):
            value = getattr(self, name)
            if value is None and name in ("fee_bps", "slippage_bps"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PaperRefused(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise PaperRefused(f"{name} must be a finite number, got {value!r}")
        if self.days <= 0:
            raise PaperRefused(f"days must be more than 0, got {self.days}")
        if self.initial_cash <= 0:
            raise PaperRefused(f"initial_cash must be more than 0, got {self.initial_cash}")
        if (self.fee_bps or 0) < 0 or (self.slippage_bps or 0) < 0:
            raise PaperRefused(
                f"fees and slippage cannot be negative: fee_bps={self.fee_bps}, "
                f"slippage_bps={self.slippage_bps}"
            )
        if isinstance(self.max_fill, bool) or not isinstance(self.max_fill, int):
            raise PaperRefused(f"max_fill must be a whole number, got {self.max_fill!r}")
        if self.max_fill < 0:
            raise PaperRefused(f"max_fill must be 0 or more, got {self.max_fill}")

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    def costs(self, policy: CostPolicy) -> CostPolicy:
        """The costs this run trades at: its own where given, else the policy's."""
        return CostPolicy(
            policy.fee_bps if self.fee_bps is None else float(self.fee_bps),
            policy.slippage_bps if self.slippage_bps is None else float(self.slippage_bps),
        )

    def at_costs(self, policy: CostPolicy) -> PaperOptions:
        costs = self.costs(policy)
        return replace(self, fee_bps=costs.fee_bps, slippage_bps=costs.slippage_bps)


def paper_policy_reasons(model_name: str, options: PaperOptions, in_force: Any) -> list[str]:
    """Why a paper run is exploratory: costs below the policy's, or settings that disagree."""
    required = CostPolicy.of(in_force)
    return [*options.costs(required).below(required), *settings_disagreement(model_name, in_force)]


@dataclass(frozen=True)
class PaperPeriod:
    """[start, stop) of the bars to paper trade, and why it starts where it does."""

    start: pd.Timestamp
    stop: pd.Timestamp
    after_training: pd.Timestamp | None
    after_validation: pd.Timestamp


@dataclass
class PaperComparison:
    """A paper replay and the backtest over the same bars, cut to the period."""

    paper: PaperRunResult
    paper_equity: pd.Series
    backtest_equity: pd.Series
    paper_trades: pd.DataFrame
    backtest_trades: pd.DataFrame
    metrics: dict[str, Any]
    backtest_metrics: dict[str, Any]
    divergence: dict[str, Any]


# --- the period -----------------------------------------------------------------------------


def paper_period(
    version: ModelVersion, options: PaperOptions, data_dir: Path | None = None
) -> PaperPeriod:
    """The bars after training and after the passing validation window, clipped to the store."""
    validation = lifecycle.passing_validation_run(version)
    if validation is None or validation.window_end is None:
        raise PaperRefused(
            f"{version} has no passing out-of-sample validation run: its paper period starts "
            "after the validated window, so validate it first"
        )
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    step = interval_timedelta(version.interval)
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    if stored is None:
        raise PaperRefused(
            f"no {version.symbol} {version.interval} candles stored in {data_dir}: "
            "import or fetch them first"
        )
    first_unseen = out_of_sample_start(version.metadata)
    after_training = first_unseen.ceil(step) if first_unseen is not None else None
    # window_end is the open time of the validation window's last bar.
    after_validation = pd.Timestamp(validation.window_end).tz_convert("UTC") + step
    start = max(after_validation, after_training or after_validation)
    stop = min(start + pd.Timedelta(days=options.days), stored[1] + step)
    bars = max(0, int((stop - start) / step))
    if bars < MIN_PERIOD_BARS:
        raise PaperRefused(
            f"too few bars to paper trade {version}: {bars} stored {version.symbol} "
            f"{version.interval} bar(s) from {start.isoformat()} (after the training data and "
            f"validation run #{validation.pk}, which ends {validation.window_end.isoformat()}); "
            f"the store ends {stored[1].isoformat()}: fetch newer candles first"
        )
    return PaperPeriod(start, stop, after_training, after_validation)


# --- computing (no database writes) ---------------------------------------------------------


def load_version_predictor(version: ModelVersion) -> OnnxPredictor:
    """The version's model from the registry store, every start-up check run."""
    predictor = OnnxPredictor.from_dir(version_dir(version), version.name)
    if predictor.sha256 != version.onnx_sha256:
        raise PaperRefused(
            f"the stored ONNX file of {version} has sha256 {predictor.sha256}, but the registry "
            f"recorded {version.onnx_sha256}: the store was altered, refusing to trade it"
        )
    return predictor


def paper_compare(
    *,
    predictor: OnnxPredictor,
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    period_start: pd.Timestamp,
    options: PaperOptions,
    journal_dir: Path,
) -> PaperComparison:
    """Replay ``candles`` through the engine and the backtester; compare them on the period.

    Bars before ``period_start`` are warm-up: the model needs them to make its first
    decision, and neither side can trade on them (they end with a flat target).
    """
    if options.fee_bps is None or options.slippage_bps is None:
        raise PaperRefused("paper costs are unresolved: pass options.at_costs(the policy's)")
    fee_bps, slippage_bps = float(options.fee_bps), float(options.slippage_bps)
    paper = run_paper_replay(
        None,
        candles,
        sentiment,
        strategy=STRATEGY,
        predictor=predictor,
        initial_cash=options.initial_cash,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        journal_dir=journal_dir,
    )
    strategy = get_strategy(
        STRATEGY, predictor=predictor, fee_bps=fee_bps, slippage_bps=slippage_bps
    )
    config = SimulationConfig(
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        initial_equity=options.initial_cash,
    )
    backtest = simulate(
        candles, strategy.targets(candles, sentiment), config, with_buy_and_hold=False
    )
    _refuse_warmup_trades(paper.trades, backtest.trades, period_start)
    period = candles.index >= period_start
    paper_equity, backtest_equity = paper.equity[period], backtest.equity[period]
    metrics = compute_metrics(
        paper_equity, paper.trades, paper.position[period], options.initial_cash
    )
    backtest_metrics = compute_metrics(
        backtest_equity, backtest.trades, backtest.position[period], options.initial_cash
    )
    return PaperComparison(
        paper=paper,
        paper_equity=paper_equity,
        backtest_equity=backtest_equity,
        paper_trades=paper.trades,
        backtest_trades=backtest.trades,
        metrics=json_safe(metrics),
        backtest_metrics=json_safe(backtest_metrics),
        divergence=divergence(paper.trades, backtest.trades, paper_equity, backtest_equity),
    )


def _refuse_warmup_trades(
    paper_trades: pd.DataFrame, backtest_trades: pd.DataFrame, period_start: pd.Timestamp
) -> None:
    # The warm-up ends one bar before the model can decide: a fill there would be a bug in
    # the warm-up arithmetic, and would put bars the validation already used into the record.
    for side, trades in (("paper", paper_trades), ("backtest", backtest_trades)):
        early = trades[trades["entry_time"] < period_start]
        if not early.empty:
            raise AssertionError(
                f"{side} traded during the warm-up before {period_start.isoformat()}: "
                f"first entry {early['entry_time'].iloc[0]}"
            )


def divergence(
    paper_trades: pd.DataFrame,
    backtest_trades: pd.DataFrame,
    paper_equity: pd.Series,
    backtest_equity: pd.Series,
) -> dict[str, Any]:
    """How far the paper run is from the backtest over the same bars (0 means identical)."""
    final_backtest = float(backtest_equity.iloc[-1])
    curve_gap = (paper_equity - backtest_equity).abs() / backtest_equity.abs()
    return json_safe(
        {
            "paper_trades": len(paper_trades),
            "backtest_trades": len(backtest_trades),
            "trade_count_difference": abs(len(paper_trades) - len(backtest_trades)),
            "mismatched_trades": mismatched_trades(paper_trades, backtest_trades),
            "paper_final_equity": float(paper_equity.iloc[-1]),
            "backtest_final_equity": final_backtest,
            "equity_relative": abs(float(paper_equity.iloc[-1]) - final_backtest)
            / abs(final_backtest),
            "equity_max_relative": float(curve_gap.max()),
        }
    )


def mismatched_trades(paper: pd.DataFrame, backtest: pd.DataFrame) -> int:
    """Trades, pairwise in order, whose times, exit reason, size or prices differ.

    A trade present on one side only counts as a mismatch too.
    """
    paired = min(len(paper), len(backtest))
    mismatched = abs(len(paper) - len(backtest))
    for a, b in zip(
        paper.iloc[:paired].itertuples(index=False),
        backtest.iloc[:paired].itertuples(index=False),
        strict=True,
    ):
        same_shape = (a.entry_time, a.exit_time, a.exit_reason) == (
            b.entry_time,
            b.exit_time,
            b.exit_reason,
        )
        same_numbers = all(
            np.isclose(getattr(a, column), getattr(b, column), rtol=PRICE_RTOL, atol=0.0)
            for column in ("quantity", "entry_price", "exit_price", "fees")
        )
        mismatched += not (same_shape and same_numbers)
    return mismatched


def paper_gates(
    *,
    bars: int,
    metrics: Mapping[str, Any],
    divergence: Mapping[str, Any],
    gates: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The paper stage's gates; a threshold set to None skips that gate."""
    unknown = sorted(set(gates) - set(KNOWN_GATES))
    if unknown:
        raise PaperRefused(f"unknown paper gate(s) {unknown}; known: {list(KNOWN_GATES)}")
    checks = {
        # name: (value, passes when value >= threshold)
        "min_bars": (bars, True),
        "max_drawdown": (metrics.get("max_drawdown"), False),
        "max_divergence": (divergence.get("equity_relative"), False),
    }
    results = []
    for name, (value, at_least) in checks.items():
        threshold = gates.get(name)
        if threshold is None:
            continue
        passed = value is not None and (value >= threshold if at_least else value <= threshold)
        results.append(
            {"name": name, "passed": bool(passed), "value": value, "threshold": threshold}
        )
    return json_safe(results)


# --- reports --------------------------------------------------------------------------------


def report_root() -> Path:
    return Path(settings.MEDIA_ROOT) / REPORT_FOLDER


def run_folder(run: PaperTradingRun) -> Path:
    return report_root() / str(run.pk)


def write_equity_plot(comparison: PaperComparison, path: Path, title: str) -> Path:
    """Paper equity over the backtest's: one line hiding the other is the expected picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas: no pyplot global state, safe in a worker process.
    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(comparison.backtest_equity.index, comparison.backtest_equity, label="backtest",
              color="tab:blue", linewidth=2.5, alpha=0.6)  # fmt: skip
    axes.plot(comparison.paper_equity.index, comparison.paper_equity, label="paper (engine)",
              color="tab:orange", linewidth=1.0, linestyle="--")  # fmt: skip
    for entry in comparison.paper_trades["entry_time"]:
        axes.axvline(entry, color="tab:green", alpha=0.15, linewidth=0.8)
    axes.set_title(title)
    axes.set_ylabel("equity (USDT)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_report(folder: Path, comparison: PaperComparison, summary: dict[str, Any]) -> None:
    comparison.paper_trades.to_csv(folder / "paper_trades.csv", index=False)
    comparison.backtest_trades.to_csv(folder / "backtest_trades.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


# --- executing and recording ----------------------------------------------------------------


def paper_options_of(run: PaperTradingRun) -> PaperOptions:
    """The options requested for ``run`` (defaults where none were given)."""
    return PaperOptions.from_config(run.config)


def paper_execute(run: PaperTradingRun) -> PaperTradingRun:
    """Paper trade a claimed run's version and record the outcome, or why it could not run."""
    try:
        outcome = _paper_outcome(run)
    except PAPER_INPUT_ERRORS as exc:
        run_fail(run=run, error=str(exc))
        return PaperTradingRun.objects.select_related("model_version").get(pk=run.pk)
    except Exception as exc:
        # A bug, not bad input: the run must not stay 'running' for ever.
        run_fail(run=run, error=f"unexpected error: {type(exc).__name__}: {exc}")
        raise
    finished = paper_run_complete(run=run, outcome=outcome)
    finished.model_version.refresh_from_db()
    return finished


def _paper_outcome(run: PaperTradingRun) -> RunOutcome:
    version = run.model_version
    requested = paper_options_of(run)
    # Read once: the costs and the paper gates of this run both come from this row.
    in_force = policy_in_force(version.name)
    reasons = paper_policy_reasons(version.name, requested, in_force)
    options = requested.at_costs(CostPolicy.of(in_force))
    period = paper_period(version, options)
    predictor = load_version_predictor(version)
    data = _period_data(version, predictor, period, options)
    folder = _fresh_run_folder(run)
    try:
        comparison = paper_compare(
            predictor=predictor,
            candles=data.candles,
            sentiment=data.sentiment,
            period_start=period.start,
            options=options,
            journal_dir=folder / "journal",
        )
        outcome = _outcome(version, options, period, data, comparison, folder, in_force)
    except BaseException:
        # No half-written report left behind for a run recorded as an error.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    outcome.exploratory = bool(reasons)
    outcome.exploratory_reasons = reasons
    outcome.config = {"policy_in_force": policy_reference(in_force), "exploratory_reasons": reasons}
    return outcome


@dataclass
class PeriodData:
    """The candles to replay (warm-up included), the sentiment, and where they came from."""

    candles: pd.DataFrame
    sentiment: pd.Series | None
    facts: dict[str, Any]


def _period_data(
    version: ModelVersion, predictor: OnnxPredictor, period: PaperPeriod, options: PaperOptions
) -> PeriodData:
    data_dir = Path(settings.TRADEBOT_DATA_DIR)
    # Warm-up: just enough bars for the first decision to fall on the period's first close.
    candles, data_hash, repair = store_candles_read(
        data_dir,
        ModelSource.for_version(version),
        period.start,
        period.stop,
        predictor.required_history - 1,
        options.max_fill,
    )
    sentiment, sentiment_hash = store_sentiment_read(data_dir, predictor)
    facts = {
        "warmup_bars": int((candles.index < period.start).sum()),
        "data_content_hash": data_hash,
        "sentiment_content_hash": sentiment_hash,
        "gap_policy": {"fill_at_most_bars": options.max_fill, **repair},
    }
    return PeriodData(candles, sentiment, facts)


def _fresh_run_folder(run: PaperTradingRun) -> Path:
    folder = run_folder(run)
    if folder.exists():
        shutil.rmtree(folder)  # left by an earlier attempt at this same run
    folder.mkdir(parents=True)
    return folder


def _outcome(
    version: ModelVersion,
    options: PaperOptions,
    period: PaperPeriod,
    data: PeriodData,
    comparison: PaperComparison,
    folder: Path,
    in_force: Any = None,
) -> RunOutcome:
    bars = len(comparison.paper_equity)
    in_force = in_force if in_force is not None else policy_in_force(version.name)
    gate_results = paper_gates(
        bars=bars,
        metrics=comparison.metrics,
        divergence=comparison.divergence,
        gates=dict(in_force.content["gates"]["paper"]),
    )
    period_end = comparison.paper_equity.index[-1]
    run_facts = {
        **options.to_config(),
        "strategy": STRATEGY,
        "period_start": period.start,
        "period_end": period_end,
        "after_training": period.after_training,
        "after_validation": period.after_validation,
        **data.facts,
        "model_sha256": comparison.paper.model_sha256,
        "journal": _media_relative(comparison.paper.journal),
    }
    metrics = json_safe(
        {**comparison.metrics, "backtest": comparison.backtest_metrics, "run": run_facts}
    )
    plot = write_equity_plot(
        comparison,
        folder / PLOT_FILE,
        f"{version.name} v{version.version}: paper vs backtest, "
        f"{period.start:%Y-%m-%d %H:%M} to {period_end:%Y-%m-%d %H:%M} UTC",
    )
    summary = {"metrics": metrics, "divergence": comparison.divergence, "gates": gate_results}
    write_report(folder, comparison, summary)
    return RunOutcome(
        window_start=period.start.to_pydatetime(),
        window_end=period_end.to_pydatetime(),
        metrics=metrics,
        gate_results=gate_results,
        passed=all(g["passed"] for g in gate_results),
        data_content_hash=data.facts["data_content_hash"],
        report_dir=_media_relative(folder),
        plot_file=plot.name,
        bars=bars,
        trades=len(comparison.paper_trades),
        divergence=comparison.divergence,
        policy_id=in_force.pk,
        policy_hash=in_force.content_hash,
    )


def _media_relative(path: Path | None) -> str:
    return str(path.relative_to(settings.MEDIA_ROOT)) if path is not None else ""


def paper_run_create_inline(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    options: PaperOptions,
) -> PaperTradingRun:
    """A run executed right here (``paper_trade_version``), claimed and not queued."""
    options.check()
    if model_version.state != ModelState.VALIDATED:
        raise lifecycle.TransitionRefused(
            f"{model_version} is {model_version.get_state_display().lower()}; "
            "only a validated version is replayed (the pre-check before staging)."
        )
    actor = requested_by if requested_by and requested_by.is_authenticated else None
    with transaction.atomic():
        run = PaperTradingRun.objects.create(
            model_version=model_version, requested_by=actor, config=options.to_config()
        )
        audit_event_record(
            event_type=REQUEST_EVENT,
            actor=actor,
            obj=run,
            data={"version": model_version.pk, "inline": True, **options.to_config()},
        )
    if not run_mark_running(run):
        raise AssertionError(f"paper run {run.pk} was claimed by someone else")
    run.status = RunStatus.RUNNING
    return run
