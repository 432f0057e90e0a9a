"""Market conditions a model's training data must contain: the training gate (#12, part 5).

The guide asks for "multiple market conditions in training data". The training data is cut
into consecutive whole windows of ``window_days`` (from the first training bar); a window
whose close-to-close move is above ``+threshold`` is *up*, below ``-threshold`` *down*,
otherwise *sideways*. Each condition in ``required`` must occur at least once, or the
version is refused, unless an override with a written reason is given (one audit event).

``TRADEBOT_MARKET_CONDITIONS`` (settings, JSON in the environment) replaces single keys:

- ``window_days`` (default 30): length of one window, in days;
- ``threshold`` (default 0.05): a move beyond +/-5% over a window is up or down;
- ``required`` (default ["up", "down", "sideways"]): the conditions training must contain.

The engine measures the windows (``engine.training.dataset.market_conditions``) with these
values, which the training service passes in; this module judges what it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from engine.training.dataset import market_condition_label

CONDITIONS = ("up", "down", "sideways")
DEFAULT_MARKET_CONDITIONS: dict[str, Any] = {
    "window_days": 30,
    "threshold": 0.05,
    "required": list(CONDITIONS),
}


class MarketConditionsError(ValueError):
    """The setting is malformed: named, never guessed around."""


def market_conditions_policy() -> dict[str, Any]:
    configured = getattr(settings, "TRADEBOT_MARKET_CONDITIONS", {}) or {}
    policy = {**DEFAULT_MARKET_CONDITIONS, **configured}
    unknown = sorted(set(policy) - set(DEFAULT_MARKET_CONDITIONS))
    if unknown:
        raise MarketConditionsError(f"TRADEBOT_MARKET_CONDITIONS: unknown key(s) {unknown}")
    wrong = sorted(set(policy["required"]) - set(CONDITIONS))
    if wrong:
        raise MarketConditionsError(
            f"TRADEBOT_MARKET_CONDITIONS.required: unknown condition(s) {wrong}; "
            f"known: {', '.join(CONDITIONS)}"
        )
    if not int(policy["window_days"]) > 0 or not 0 < float(policy["threshold"]) < 1:
        raise MarketConditionsError(
            "TRADEBOT_MARKET_CONDITIONS: window_days must be positive and threshold in (0, 1)"
        )
    return policy


def missing_conditions(metadata: Mapping[str, Any]) -> str | None:
    """Why the metadata's training data fails the gate, in one line; None when it passes.

    Re-labels the recorded window moves with the policy's threshold, so a model measured
    elsewhere with a laxer threshold is judged by ours. Windows of another length cannot be
    re-labelled: that is a failure too, never a pass by default.
    """
    policy = market_conditions_policy()
    measured = metadata.get("market_conditions")
    if not isinstance(measured, Mapping) or not isinstance(measured.get("moves"), list):
        return "the metadata records no market conditions of its training data"
    days = int(policy["window_days"])
    if measured.get("window_days") != days:
        return (
            f"market_conditions were measured on {measured.get('window_days')!r}-day windows; "
            f"the policy needs {days}-day windows"
        )
    threshold = float(policy["threshold"])
    seen = {market_condition_label(float(move), threshold) for move in measured["moves"]}
    missing = [name for name in policy["required"] if name not in seen]
    if not missing:
        return None
    return (
        f"training data has no {'/'.join(missing)} {days}-day window "
        f"(+/-{threshold:.0%}; {len(measured['moves'])} windows seen): "
        "the model never saw such a market"
    )


def check_override_reason(reason: str | None) -> str | None:
    """An override is a written reason or nothing; a blank one is refused."""
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason.strip():
        raise MarketConditionsError(
            "--allow-missing-conditions needs a written reason, e.g. "
            '--allow-missing-conditions "research run on the 2021 bull market"'
        )
    return reason.strip()
