"""Errors of the backtester: one type, so callers catch a bad run in one place."""

from __future__ import annotations


class BacktestError(ValueError):
    """A backtest that cannot run as asked: bad input, no data, unknown strategy, in-sample."""


class InSampleWindowError(BacktestError):
    """The backtest window overlaps the data the model was trained or selected on."""
