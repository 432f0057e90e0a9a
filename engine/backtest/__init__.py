"""Backtesting: an execution simulator, metrics, reports, gates and the run_backtest entry point.

See docs/backtest.md for the exact execution rules and result fields.
"""

from engine.backtest.costs import fee, fill_price
from engine.backtest.errors import BacktestError, InSampleWindowError
from engine.backtest.gates import DEFAULT_GATES, GateResult, evaluate_gates, gates_passed
from engine.backtest.guards import check_out_of_sample, out_of_sample_start
from engine.backtest.metrics import compute_metrics
from engine.backtest.report import write_report
from engine.backtest.runner import BacktestRun, WalkForwardPart, run_backtest, split_parts
from engine.backtest.simulator import BacktestResult, SimulationConfig, simulate

__all__ = [
    "DEFAULT_GATES",
    "BacktestError",
    "BacktestResult",
    "BacktestRun",
    "GateResult",
    "InSampleWindowError",
    "SimulationConfig",
    "WalkForwardPart",
    "check_out_of_sample",
    "compute_metrics",
    "evaluate_gates",
    "fee",
    "fill_price",
    "gates_passed",
    "out_of_sample_start",
    "run_backtest",
    "simulate",
    "split_parts",
    "write_report",
]
