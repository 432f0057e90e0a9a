"""run_backtest, the out-of-sample guard, gates, walk-forward and report files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.backtest import (
    BacktestError,
    InSampleWindowError,
    check_out_of_sample,
    evaluate_gates,
    run_backtest,
)
from tests.engine.backtest.helpers import random_candles
from tests.engine.strategies.fakes import MomentumPredictor

CANDLES = random_candles(24 * 60, seed=31)  # 60 days of hourly bars from 2024-01-01


def _predictor(oos_from: str | None = "2024-02-01T00:00:00+00:00") -> MomentumPredictor:
    metadata = {"name": "fake", "version": 3, "out_of_sample_from": oos_from} if oos_from else None
    return MomentumPredictor(warmup=10, metadata=metadata)


def test_runs_ml_basic_on_the_last_days_and_writes_report_files(tmp_path):
    run = run_backtest(
        "ml_basic",
        CANDLES,
        predictor=_predictor(),
        days=20,
        fee_bps=0,
        slippage_bps=0,
        output_dir=tmp_path,
    )
    assert run.window_start == CANDLES.index[-20 * 24]
    assert run.window_end == CANDLES.index[-1]
    assert len(run.result.equity) == 20 * 24
    assert run.sample_status == "out_of_sample"
    assert run.metrics["n_trades"] > 0
    assert run.model["version"] == 3
    assert run.files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trades = pd.read_csv(run.files["trades_csv"])
    assert len(trades) == run.metrics["n_trades"]
    payload = json.loads(run.files["metrics_json"].read_text())
    assert payload["metrics"]["buy_and_hold"]["n_bars"] == 20 * 24
    assert payload["passed"] == run.passed
    assert json.loads(json.dumps(run.to_dict()))["strategy"] == "ml_basic"


def test_in_sample_window_is_refused_unless_allowed_and_then_never_passes():
    predictor = _predictor("2024-02-20T00:00:00+00:00")
    with pytest.raises(InSampleWindowError, match="allow_in_sample"):
        run_backtest("ml_basic", CANDLES, predictor=predictor, days=20)
    run = run_backtest(
        "ml_basic",
        CANDLES,
        predictor=predictor,
        days=20,
        allow_in_sample=True,
        gates={"min_trades": 0},
    )
    assert run.in_sample
    assert not run.passed
    assert run.failed_gates == ["out_of_sample"]


def test_out_of_sample_guard_reads_data_end_when_no_explicit_start():
    metadata = {"data": {"end": "2024-01-31T23:00:00"}}
    assert check_out_of_sample(metadata, pd.Timestamp("2024-02-01", tz="UTC")) == "out_of_sample"
    with pytest.raises(InSampleWindowError):
        check_out_of_sample(metadata, pd.Timestamp("2024-01-31T23:00", tz="UTC"))
    assert check_out_of_sample(None, pd.Timestamp("2024-01-01", tz="UTC")) == "unverified"


def test_model_without_metadata_cannot_pass_a_gate():
    run = run_backtest(
        "ml_basic", CANDLES, predictor=_predictor(None), days=20, gates={"min_trades": 0}
    )
    assert run.sample_status == "unverified"
    assert run.failed_gates == ["out_of_sample"]


def test_walk_forward_reports_each_consecutive_part():
    run = run_backtest("buy_and_hold", CANDLES, days=30, walk_forward=3)
    assert [p.part for p in run.parts] == [1, 2, 3]
    assert run.parts[0].start == run.window_start and run.parts[-1].end == run.window_end
    assert sum(p.result.metrics["n_bars"] for p in run.parts) == 30 * 24
    assert run.parts[1].start > run.parts[0].end
    assert len(run.to_dict()["walk_forward"]) == 3


def test_gates_report_each_threshold_and_refuse_unknown_names():
    run = run_backtest("buy_and_hold", CANDLES, days=30)
    results = evaluate_gates(
        run.metrics, {"min_trades": 1, "max_drawdown": 0.0, "min_sharpe": None}
    )
    by_name = {g.name: g for g in results}
    assert by_name["min_trades"].passed
    assert by_name["max_drawdown"].passed is (run.metrics["max_drawdown"] == 0.0)
    assert "min_sharpe" not in by_name
    assert by_name["out_of_sample"].passed  # buy_and_hold involves no model
    with pytest.raises(BacktestError, match="unknown gate"):
        evaluate_gates(run.metrics, {"min_sharp": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "nope"}, "known strategies: buy_and_hold, ml_basic"),
        ({"fee_bps": -1}, "fee_bps must be"),
        ({"start": "2030-01-01"}, "no data to backtest"),
        ({"strategy": "ml_basic"}, "needs a model"),
        ({"walk_forward": 0}, "walk_forward"),
        (
            {"predictor": MomentumPredictor(warmup=10_000), "strategy": "ml_basic"},
            "too little data",
        ),
    ],
)
def test_bad_input_gives_a_clear_error_and_writes_nothing(tmp_path, kwargs, message):
    arguments = {"strategy": "buy_and_hold", "days": 20, "output_dir": tmp_path / "out", **kwargs}
    with pytest.raises(BacktestError, match=message):
        run_backtest(candles=CANDLES, **arguments)
    assert not (tmp_path / "out").exists()


def test_leaky_predictor_fails_the_lookahead_gate_naming_the_cut_and_bar():
    from tests.engine.strategies.fakes import PeekingPredictor

    run = run_backtest("ml_basic", CANDLES, predictor=PeekingPredictor(), days=20)
    assert "lookahead" in run.failed_gates and not run.passed
    gate = next(g for g in run.gate_results if g.name == "lookahead")
    assert gate.value == "leak" and run.lookahead["cut"] in gate.detail
    assert run.to_dict()["lookahead"]["bar"] == run.lookahead["bar"]


class GapCheckingPredictor(MomentumPredictor):
    """Refuses a gap with engine.features' own check, as OnnxPredictor.predict does."""

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        from engine.features import check_no_gaps

        check_no_gaps(candles, pd.Timedelta(hours=1))
        return super().predict(candles, sentiment)


def test_a_feature_error_from_the_model_becomes_a_backtest_error_with_its_message(tmp_path):
    gapped = CANDLES.drop(CANDLES.index[24 * 50 : 24 * 50 + 5])  # five bars missing, unrepaired
    with pytest.raises(BacktestError, match=r"1 unrepaired gap.*5 bar.*missing") as refused:
        run_backtest(
            "ml_basic",
            gapped,
            predictor=GapCheckingPredictor(warmup=10),
            days=20,
            output_dir=tmp_path / "out",
        )
    assert "ml_basic" in str(refused.value)
    assert not (tmp_path / "out").exists()
