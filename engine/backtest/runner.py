"""One concern: run_backtest, from a strategy name, candles and a model to metrics and files.

run_backtest: one validation run from a strategy name, candles and a model to metrics and files.

The Django command and the Celery task are thin wrappers: they load candles (and the data
content hash) from the store, call `run_backtest`, and record `BacktestRun.to_dict()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest.baselines import (
    DEFAULT_SEEDS,
    always_flat,
    mean_holding_bars,
    random_long_flat_baseline,
)
from engine.backtest.deflated import (
    DEFAULT_DSR_BENCHMARK,
    DSR_BENCHMARKS,
    MIN_RETURNS,
    minimum_detectable_sharpe,
    return_moments,
    sharpe_significance,
)
from engine.backtest.errors import BacktestError
from engine.backtest.gates import DEFAULT_GATES, GateResult, evaluate_gates, gates_passed
from engine.backtest.guards import NOT_APPLICABLE, check_out_of_sample
from engine.backtest.metrics import bars_per_year, per_bar_returns
from engine.backtest.report import json_safe, write_report
from engine.backtest.simulator import BacktestResult, SimulationConfig, simulate, validate_candles
from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.features import FeatureError
from engine.strategies import (
    LookaheadError,
    LookaheadFinding,
    Predictor,
    StrategyError,
    find_lookahead,
    get_strategy,
    strategy_spec,
)

Progress = Callable[[str], None]


@dataclass
class WalkForwardPart:
    part: int
    start: pd.Timestamp
    end: pd.Timestamp
    result: BacktestResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "metrics": self.result.metrics,
        }


@dataclass
class BacktestRun:
    """Everything a caller records about one run; `to_dict()` is plain JSON."""

    strategy: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    sample_status: str
    config: dict[str, Any]
    result: BacktestResult
    parts: list[WalkForwardPart]
    gate_results: list[GateResult]
    model: dict[str, Any]
    data_content_hash: str | None
    warmup_bars_in_window: int
    lookahead: dict[str, Any] | None = None  # LookaheadFinding.to_dict(); None: not checked
    exploratory_reasons: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics

    @property
    def in_sample(self) -> bool:
        return self.sample_status == "in_sample"

    @property
    def passed(self) -> bool:
        return gates_passed(self.gate_results)

    @property
    def failed_gates(self) -> list[str]:
        return [g.name for g in self.gate_results if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "strategy": self.strategy,
                "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(),
                "n_bars": len(self.result.equity),
                "sample_status": self.sample_status,
                "in_sample": self.in_sample,
                "config": self.config,
                "model": self.model,
                "data_content_hash": self.data_content_hash,
                "warmup_bars_in_window": self.warmup_bars_in_window,
                "lookahead": self.lookahead,
                "exploratory_reasons": self.exploratory_reasons,
                "metrics": self.metrics,
                "walk_forward": [p.to_dict() for p in self.parts],
                "gates": [g.to_dict() for g in self.gate_results],
                "passed": self.passed,
                "failed_gates": self.failed_gates,
                "files": {k: str(v) for k, v in self.files.items()},
            }
        )


# ---------------------------------------------------------------------------------------------


def load_metadata(model_dir: Path, name: str | None = None) -> dict[str, Any]:
    """The `<name>_metadata.json` in `model_dir` (the only one there when no name is given)."""
    model_dir = Path(model_dir)
    if name:
        path = model_dir / f"{name}_metadata.json"
        if not path.exists():
            raise BacktestError(f"model metadata not found: {path}")
    else:
        found = sorted(model_dir.glob("*_metadata.json"))
        if len(found) != 1:
            raise BacktestError(
                f"expected exactly one *_metadata.json in {model_dir}, found {len(found)}: "
                f"pass the model name"
            )
        path = found[0]
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BacktestError(f"{path}: not valid JSON (line {error.lineno}): {error.msg}") from None


def load_predictor(model_dir: Path, name: str | None = None) -> Predictor:
    """An ONNX predictor from a model directory, all start-up checks included."""
    from engine.inference import ModelCheckError, OnnxPredictor  # only model strategies need it

    try:
        return OnnxPredictor.from_dir(model_dir, name=name)
    except ModelCheckError as error:
        raise BacktestError(f"model in {model_dir} failed its checks: {error}") from error


def select_window(
    candles: pd.DataFrame,
    *,
    days: float | None,
    start: pd.Timestamp | str | None,
    end: pd.Timestamp | str | None,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Window bounds (inclusive bar open times): the last `days` days up to `end`, or start..end."""
    last = candles.index[-1]
    window_end = last if end is None else min(_as_utc(end), last)
    if start is not None:
        window_start = _as_utc(start)
    elif days is not None:
        if not days > 0:
            raise BacktestError(f"days must be > 0, got {days}")
        step = candles.index[-1] - candles.index[-2] if len(candles) > 1 else pd.Timedelta(0)
        window_start = window_end - pd.Timedelta(days=days) + step
    else:
        window_start = candles.index[0]
    selected = candles.loc[window_start:window_end]
    if len(selected) < 2:
        raise BacktestError(
            f"no data to backtest: {len(selected)} bar(s) between {window_start} and {window_end} "
            f"(data covers {candles.index[0]} to {last})"
        )
    return selected.index[0], selected.index[-1]


def _as_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def split_parts(index: pd.DatetimeIndex, parts: int) -> list[tuple[int, int]]:
    """K consecutive, nearly equal [start, stop) position ranges covering the index."""
    if parts < 1 or parts * 2 > len(index):
        raise BacktestError(f"walk_forward must be between 1 and {len(index) // 2}, got {parts}")
    edges = np.linspace(0, len(index), parts + 1).round().astype(int)
    return list(pairwise(edges.tolist()))


def _model_summary(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    return {
        "name": metadata.get("name"),
        "version": metadata.get("version"),
        "onnx_sha256": metadata.get("onnx_sha256"),
        "out_of_sample_from": metadata.get("out_of_sample_from"),
        "data_end": (metadata.get("data") or {}).get("end"),
        "window": metadata.get("window"),
    }


def run_backtest(
    strategy: str,
    candles: pd.DataFrame,
    *,
    sentiment: pd.Series | None = None,
    predictor: Predictor | None = None,
    model_dir: Path | str | None = None,
    model_name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    days: float | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    initial_equity: float = 10_000.0,
    stop_loss_pct: float | None = None,
    take_profit_pct: float | None = None,
    strategy_params: Mapping[str, Any] | None = None,
    walk_forward: int = 1,
    allow_in_sample: bool = False,
    gates: Mapping[str, float] | None = None,
    check_lookahead: bool = True,
    trials: int = 1,
    trial_sharpes: Sequence[float | None] | None = None,
    baseline_seeds: int = DEFAULT_SEEDS,
    dsr_benchmark: str = DEFAULT_DSR_BENCHMARK,
    data_content_hash: str | None = None,
    output_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> BacktestRun:
    """Backtest `strategy` over a window of `candles`; raises BacktestError on any bad input.

    The strategy sees the whole history up to the window's end (model warm-up), the simulator
    only the window. Nothing is written unless `output_dir` is given, and nothing at all when
    an error is raised.
    """
    say = progress or (lambda _message: None)
    config = SimulationConfig(
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        initial_equity=initial_equity,
        stop_loss_pct=stop_loss_pct,
        take_profit_pct=take_profit_pct,
    )
    try:
        spec = strategy_spec(strategy)
    except StrategyError as error:
        raise BacktestError(str(error)) from None
    validate_candles(candles)
    window_start, window_end = select_window(candles, days=days, start=start, end=end)
    parts = split_parts(candles.loc[window_start:window_end].index, walk_forward)

    if spec.needs_model:
        if predictor is None:
            if model_dir is None:
                raise BacktestError(
                    f"strategy {strategy!r} needs a model: pass model_dir or predictor"
                )
            say(f"loading model from {model_dir}")
            predictor = load_predictor(Path(model_dir), model_name)
        if metadata is None:
            metadata = getattr(predictor, "metadata", None)
        if metadata is None and model_dir is not None:
            metadata = load_metadata(Path(model_dir), model_name)
        sample_status = check_out_of_sample(metadata, window_start, allow_in_sample=allow_in_sample)
    else:
        sample_status = NOT_APPLICABLE

    try:
        chosen = get_strategy(
            strategy,
            predictor=predictor,
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            **dict(strategy_params or {}),
        )
        if hasattr(chosen, "decide_from"):
            chosen.decide_from = window_start  # flat at the window's start, like a new engine
        history = candles.loc[:window_end]
        say(f"computing {strategy} targets on {len(history)} bars")
        all_targets = chosen.targets(history, sentiment)
        predictions = getattr(chosen, "last_predictions", None)  # before the check reruns it
        warmup = _warmup_bars(predictions, window_start, window_end)  # refuses an empty window
        finding = None
        if check_lookahead:
            say("checking the model's predictions never read a later bar")
            finding = find_lookahead(
                chosen, history, sentiment, first_bar=history.index.get_loc(window_start)
            )
    except LookaheadError as error:
        raise BacktestError(str(error)) from error
    except StrategyError as error:
        raise BacktestError(f"strategy {strategy!r}: {error}") from error
    except FeatureError as error:
        # Bad data for the model (an unrepaired gap, missing sentiment): the caller's input.
        raise BacktestError(f"strategy {strategy!r}: model features: {error}") from error

    targets = all_targets.loc[window_start:window_end]
    window = candles.loc[window_start:window_end]
    say(f"simulating {len(window)} bars, then {baseline_seeds} random long/flat paths")
    result, judged = simulate_and_judge(
        window,
        targets,
        config,
        gates=gates,
        sample_status=sample_status,
        trials=trials,
        trial_sharpes=trial_sharpes,
        seeds=baseline_seeds,
        benchmark=dsr_benchmark,
    )
    part_results = []
    if walk_forward > 1:
        for number, (a, b) in enumerate(parts, start=1):
            piece = window.iloc[a:b]
            part_results.append(
                WalkForwardPart(
                    number,
                    piece.index[0],
                    piece.index[-1],
                    simulate(piece, targets.iloc[a:b], config),
                )
            )
    gate_results = [*judged, lookahead_gate(finding)]
    run = BacktestRun(
        strategy=strategy,
        window_start=window_start,
        window_end=window_end,
        sample_status=sample_status,
        config={
            **config.to_dict(),
            "walk_forward": walk_forward,
            "dsr_benchmark": dsr_benchmark,
            "strategy_params": dict(strategy_params or {}),
        },
        result=result,
        parts=part_results,
        gate_results=gate_results,
        model=_model_summary(metadata),
        data_content_hash=data_content_hash,
        warmup_bars_in_window=warmup,
        lookahead=finding.to_dict() if finding else None,
        exploratory_reasons=[] if finding else [LOOKAHEAD_SKIPPED],
    )
    if output_dir is not None:
        stem = f"{strategy}_{window_start:%Y%m%d}_{window_end:%Y%m%d}"
        title = f"{strategy} {window_start:%Y-%m-%d} to {window_end:%Y-%m-%d} ({sample_status})"
        run.files = write_report(result, Path(output_dir), stem, run.to_dict(), title)
    return run


def simulate_and_judge(
    window: pd.DataFrame,
    targets: pd.Series,
    config: SimulationConfig,
    *,
    gates: Mapping[str, float] | None = None,
    sample_status: str = NOT_APPLICABLE,
    trials: int = 1,
    trial_sharpes: Sequence[float | None] | None = None,
    seeds: int = DEFAULT_SEEDS,
    benchmark: str = DEFAULT_DSR_BENCHMARK,
) -> tuple[BacktestResult, list[GateResult]]:
    """Simulate `targets` on `window`, add significance and baselines, and apply the gates.

    The one judgement every backtest gets; `run_backtest` adds the look-ahead gate on top.
    """
    result = simulate(window, targets, config)
    add_judgement_metrics(
        result,
        window,
        trials=trials,
        trial_sharpes=trial_sharpes,
        seeds=seeds,
        benchmark=benchmark,
    )
    result.metrics["power"] = evidence_power(
        result, gates=gates, benchmark=benchmark, trial_sharpes=trial_sharpes
    )
    return result, evaluate_gates(result.metrics, gates, sample_status=sample_status)


def benchmark_returns(result: BacktestResult, benchmark: str) -> np.ndarray:
    """Per-bar returns of the named benchmark on the run's bars, at the run's costs."""
    if benchmark not in DSR_BENCHMARKS:
        raise BacktestError(
            f"unknown DSR benchmark {benchmark!r}; known: {', '.join(DSR_BENCHMARKS)}"
        )
    if benchmark == "cash":
        return np.zeros(len(result.equity))
    if result.buy_and_hold_equity is None:
        raise BacktestError("the buy_and_hold DSR benchmark needs the run's buy-and-hold curve")
    hold = result.buy_and_hold_equity.reindex(result.equity.index)
    return per_bar_returns(hold, result.config.initial_equity)


def excess_returns(result: BacktestResult, benchmark: str = DEFAULT_DSR_BENCHMARK) -> np.ndarray:
    """The strategy's per-bar returns minus the benchmark's: what the DSR deflates."""
    own = per_bar_returns(result.equity, result.config.initial_equity)
    return own - benchmark_returns(result, benchmark)


def add_judgement_metrics(
    result: BacktestResult,
    window: pd.DataFrame,
    *,
    trials: int,
    trial_sharpes: Sequence[float | None] | None,
    seeds: int,
    benchmark: str = DEFAULT_DSR_BENCHMARK,
) -> None:
    """Put PSR, DSR and the baselines into `result.metrics`, where the gates read them.

    PSR is the strategy's own per-bar Sharpe ratio against buy-and-hold's over the same bars.
    DSR deflates the Sharpe ratio of the per-bar returns in excess of `benchmark`'s against
    the Sharpe ratio the best of `trials` skill-less attempts would reach
    (engine.backtest.deflated): being long a rising market is not skill.
    `sharpe_per_bar` (what trials record) is that excess Sharpe ratio.
    """
    metrics = result.metrics
    initial = result.config.initial_equity
    hold = metrics.get("buy_and_hold") or {}
    benchmark_sharpe = 0.0
    if result.buy_and_hold_equity is not None:
        moments = return_moments(per_bar_returns(result.buy_and_hold_equity, initial))
        benchmark_sharpe = 0.0 if isinstance(moments, str) else moments.sharpe
    own = sharpe_significance(
        per_bar_returns(result.equity, initial), benchmark_sharpe=benchmark_sharpe, trials=1
    )
    # A strategy whose own returns cannot be measured (it never held a position) has shown
    # no skill: its excess over the benchmark is only the benchmark's move, not a DSR.
    significance = (
        own
        if own.reason and own.sharpe is None
        else sharpe_significance(
            excess_returns(result, benchmark),
            benchmark_sharpe=0.0,
            trials=trials,
            trial_sharpes=list(trial_sharpes) if trial_sharpes is not None else None,
        )
    )
    metrics.update(significance.to_dict())
    metrics["psr"] = own.psr
    metrics["own_sharpe_per_bar"] = own.sharpe
    metrics["dsr_benchmark"] = benchmark
    if significance is not own and significance.reason:
        metrics["significance_reason"] = f"excess over {benchmark}: {significance.reason}"
    metrics["benchmark_sharpe_per_bar"] = benchmark_sharpe
    random = random_long_flat_baseline(
        window,
        exposure=float(metrics["exposure"]),
        mean_holding_bars=mean_holding_bars(result.trades),
        model_total_return=float(metrics["total_return"]),
        fee_bps=result.config.fee_bps,
        slippage_bps=result.config.slippage_bps,
        seeds=seeds,
    )
    metrics["baselines"] = {
        "buy_and_hold": {
            key: hold.get(key) for key in ("total_return", "sharpe", "max_drawdown", "n_trades")
        },
        "always_flat": always_flat(),
        "random_long_flat": random.to_dict(),
    }


def evidence_power(
    result: BacktestResult,
    *,
    gates: Mapping[str, float | None] | None,
    benchmark: str = DEFAULT_DSR_BENCHMARK,
    trial_sharpes: Sequence[float | None] | None = None,
) -> dict[str, Any] | None:
    """What this evidence could have seen: the smallest annual Sharpe ratio of the excess
    returns that its DSR gate passes with 80% probability, at its bars, trials, skew and
    kurtosis (engine.backtest.deflated.minimum_detectable_sharpe). Gates without a DSR
    threshold are read at the shipped default's, the verdict decision pages lead with.
    None with too few bars to say."""
    threshold = (gates or {}).get("min_dsr") or DEFAULT_GATES["min_dsr"]
    per_year = bars_per_year(pd.DatetimeIndex(result.equity.index))
    moments = return_moments(excess_returns(result, benchmark))
    if threshold is None or not np.isfinite(per_year) or len(result.equity) < MIN_RETURNS:
        return None
    skew, kurtosis = (0.0, 3.0) if isinstance(moments, str) else (moments.skew, moments.kurtosis)
    known = [s for s in (trial_sharpes or []) if s is not None and np.isfinite(s)]
    spread = float(np.var(np.asarray(known), ddof=1)) if len(known) >= 2 else 0.0
    found = minimum_detectable_sharpe(
        n_bars=len(result.equity),
        trials=int(result.metrics.get("trials") or 1),
        bars_per_year=per_year,
        skew=skew,
        kurtosis=kurtosis,
        dsr_threshold=float(threshold),
        trial_sharpe_variance=spread,
    )
    return found.to_dict()


LOOKAHEAD_SKIPPED = "the look-ahead check was skipped"


def lookahead_gate(finding: LookaheadFinding | None) -> GateResult:
    """The `lookahead` gate: passes only when the check ran and found no leak."""
    if finding is None:
        return GateResult(
            "lookahead",
            "lookahead",
            None,
            "skipped",
            False,
            f"{LOOKAHEAD_SKIPPED}: the run cannot pass",
        )
    if finding.cuts == 0:
        return GateResult(
            "lookahead",
            "lookahead",
            None,
            "unchecked",
            False,
            "no cut could be checked (no prediction in the window): the run cannot pass",
        )
    return GateResult(
        "lookahead",
        "lookahead",
        None,
        "leak" if finding.leak else "none",
        not finding.leak,
        finding.detail,
    )


def _warmup_bars(
    predictions: pd.Series | None, window_start: pd.Timestamp, window_end: pd.Timestamp
) -> int:
    """Window bars without a model prediction; a window with none at all is an error."""
    if predictions is None:
        return 0
    in_window = predictions.loc[window_start:window_end]
    missing = int(in_window.isna().sum())
    if missing == len(in_window):
        raise BacktestError(
            f"too little data for the model: no prediction in the window {window_start} to "
            f"{window_end} ({len(in_window)} bars); the model needs more history before it"
        )
    return missing
