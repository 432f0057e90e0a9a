"""The demo names the default gate that would refuse a version, beside its own loosened ones."""

from __future__ import annotations

from models_registry.demo_steps import default_gate_failures, say_against_default_gates


def metrics(**overrides):
    base = {
        "sharpe": 1.2,
        "max_drawdown": 0.1,
        "n_trades": 12,
        "n_bars": 24 * 90,
        "total_return": 0.08,
        "win_rate": 0.5,
        "buy_and_hold": {"total_return": 0.02},
    }
    return {**base, **overrides}


def test_a_flat_version_is_named_as_refused_by_the_trade_count_gate():
    refused = default_gate_failures(metrics(n_trades=0))
    assert any(name.startswith("min_trades") for name in refused)
    assert not any(name.startswith("min_trades") for name in default_gate_failures(metrics()))


def test_the_demo_says_both_verdicts():
    lines: list[str] = []
    summary = {"metrics": metrics(n_trades=0, total_return=0.0), "failed_gates": []}
    say_against_default_gates(summary, lines.append)
    assert "0 trade(s)" in lines[0] and "demo gates: passed" in lines[0]
    assert "default gates would REFUSE" in lines[1] and "min_trades" in lines[1]
