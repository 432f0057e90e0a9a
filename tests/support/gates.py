"""Gate settings for tests about something other than the gates.

A tiny model trained in seconds has no edge, so the default validation gates (DSR >= 0.95,
return above zero and above buy-and-hold and always-flat) refuse it, as they should. Tests of
the lifecycle, the commands or the admin switch those gates off here, by name, so a reader
sees what is loosened; the gates themselves are tested in tests/engine/backtest and
tests/registry/test_counted_trials.py against their defaults.
"""

from __future__ import annotations

from typing import Any

EDGE_GATES_OFF: dict[str, Any] = {
    "min_dsr": None,
    "total_return_above": None,
    "beats_buy_and_hold_by": None,
    "beats_always_flat_by": None,
}


def loose_validation(**thresholds: Any) -> dict[str, Any]:
    """Validation gates with the edge gates off and the given thresholds."""
    return {**EDGE_GATES_OFF, **thresholds}
