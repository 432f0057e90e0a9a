"""Walk-forward evidence re-fitted per fold (#28): the plan, the join, and a planted edge."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from engine.backtest.errors import BacktestError
from engine.backtest.gates import DEFAULT_GATES
from engine.backtest.simulator import SimulationConfig
from engine.backtest.walk_forward import (
    FoldTrades,
    RefitFold,
    fold_targets,
    join_fold_targets,
    joined_lookahead_gate,
    judge_refit_evidence,
    plan_refit_folds,
)
from engine.strategies import LookaheadFinding

HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2024-01-01", tz="UTC")
STOP = pd.Timestamp("2024-12-01", tz="UTC")
POLICY_COSTS = SimulationConfig(fee_bps=10.0, slippage_bps=5.0)


@pytest.mark.parametrize(
    ("folds", "fold_days", "horizon"),
    [(1, 90, 24), (2, 5, 1), (3, 30, 6), (6, 45.5, 24), (8, 20, 12)],
)
def test_folds_are_consecutive_end_at_the_window_and_train_only_before_a_gap(
    folds: int, fold_days: float, horizon: int
) -> None:
    plan = plan_refit_folds(
        evidence_stop=STOP, folds=folds, fold_days=fold_days, step=HOUR, horizon=horizon,
        data_start=START,
    )  # fmt: skip
    assert [f.number for f in plan] == list(range(1, folds + 1))
    assert all(f.of == folds for f in plan)
    assert plan[-1].stop == STOP
    for fold in plan:
        assert fold.stop - fold.start == pd.Timedelta(days=fold_days)
        # purged (labels read `horizon` bars ahead) and embargoed (as many again)
        assert fold.start - fold.train_stop == 2 * horizon * HOUR
    for before, after in pairwise(plan):
        assert after.start == before.stop
        assert after.train_stop < after.start and after.train_stop > before.start
    assert [RefitFold.from_dict(f.to_dict()) for f in plan] == plan


def test_a_plan_leaving_too_little_history_is_refused_naming_the_first_fold() -> None:
    with pytest.raises(BacktestError, match=r"fold 1 of 6 .* days of data before it"):
        plan_refit_folds(
            evidence_stop=STOP, folds=6, fold_days=60, step=HOUR, horizon=24,
            data_start=START, min_train_days=183,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("folds", "fold_days", "horizon", "message"),
    [(0, 30, 1, "refit folds"), (True, 30, 1, "refit folds"), (2, 0, 1, "fold_days"),
     (2, 30, 0, "horizon")],
)  # fmt: skip
def test_bad_plans_are_refused_by_name(
    folds: int, fold_days: float, horizon: int, message: str
) -> None:
    with pytest.raises(BacktestError, match=message):
        plan_refit_folds(
            evidence_stop=STOP, folds=folds, fold_days=fold_days, step=HOUR, horizon=horizon,
            data_start=START,
        )  # fmt: skip


def trades_for(fold: RefitFold, finding: LookaheadFinding | None = None) -> FoldTrades:
    index = pd.date_range(fold.start, fold.stop - HOUR, freq="1h")
    return FoldTrades(fold, pd.Series(1.0, index=index), finding or LookaheadFinding(False, 20))


def test_joining_refuses_overlapping_folds_and_keeps_their_order() -> None:
    plan = plan_refit_folds(
        evidence_stop=STOP, folds=3, fold_days=2, step=HOUR, horizon=1, data_start=START
    )
    trades = [trades_for(f) for f in plan]
    joined = join_fold_targets(list(reversed(trades)))
    assert joined.index.is_monotonic_increasing and len(joined) == 3 * 48
    overlapping = FoldTrades(plan[1], trades[0].targets, None)
    with pytest.raises(BacktestError, match=r"fold 2 of 3 .* overlaps fold 1 of 3"):
        join_fold_targets([trades[0], overlapping])


@pytest.mark.parametrize("leaky", [0, 1, 2])
def test_a_leak_or_a_skipped_check_in_any_fold_fails_the_lookahead_gate_naming_it(
    leaky: int,
) -> None:
    plan = plan_refit_folds(
        evidence_stop=STOP, folds=3, fold_days=2, step=HOUR, horizon=1, data_start=START
    )
    leak = LookaheadFinding(True, 20, "predictions", "truncated", "c", "b", 1.0, 2.0)
    trades = [trades_for(f, leak if f.number == leaky + 1 else None) for f in plan]
    gate = joined_lookahead_gate(trades)
    assert not gate.passed and gate.detail.startswith(plan[leaky].name)
    skipped = [trades_for(f) for f in plan]
    skipped[leaky] = FoldTrades(plan[leaky], skipped[leaky].targets, None)
    assert not joined_lookahead_gate(skipped).passed
    assert joined_lookahead_gate([trades_for(f) for f in plan]).passed


@pytest.mark.slow
def test_a_planted_edge_refitted_per_fold_passes_and_no_fold_model_saw_its_fold(
    tmp_path: Path,
) -> None:
    from engine.inference import OnnxPredictor
    from engine.training.refit import train_fold_model
    from tests.engine.training.test_synthetic_edge import DRIFT, synthetic_candles
    from tests.engine.training.tiny_models import tiny_config

    candles = synthetic_candles(7, drift=DRIFT, rows=2400)
    config = tiny_config(objective="classification", horizon=6, force_price_only=True)
    metadata = {"training": {"config": config.to_dict()}, "data": {"start": None}}
    plan = plan_refit_folds(
        evidence_stop=candles.index[-1] + HOUR, folds=2, fold_days=25, step=HOUR, horizon=6,
        data_start=candles.index[0], min_train_days=20,
    )  # fmt: skip
    trades = []
    for fold in plan:
        model = train_fold_model(
            candles,
            None,
            metadata,
            train_stop=fold.train_stop,
            output_dir=tmp_path / f"{fold.number}",
        )
        assert pd.Timestamp(model.metadata["data"]["end"]) < fold.train_stop
        trades.append(
            fold_targets(fold, candles, predictor=OnnxPredictor.from_dir(model.output_dir))
        )
    result, judged = judge_refit_evidence(
        candles, trades, POLICY_COSTS, gates=DEFAULT_GATES, trials=len(plan) + 2
    )
    failed = [f"{g.name}: {g.detail}" for g in judged if not g.passed]
    assert not failed, failed
    assert len(result.equity) == 2 * 25 * 24
    assert result.metrics["trials"] == 4
    assert [f["number"] for f in result.metrics["refit_folds"]] == [1, 2]
    assert result.metrics["power"]["trials"] == 4
