"""The shipped gate thresholds and validation policy, and readers of the policy in force.

The policy in force is data in the registry (``models_registry.policy``, changed only by the
four-eyes transitions of ``services.policies``). ``DEFAULT_GATES`` and
``DEFAULT_VALIDATION_POLICY`` are the shipped defaults it is seeded from and measured
against. The environment (``TRADEBOT_GATES``, ``TRADEBOT_GATE_OVERRIDES``,
``TRADEBOT_VALIDATION_POLICY``, ``TRADEBOT_VALIDATION_POLICY_OVERRIDES``) may seed the
first policy when the registry is first used, and nothing more: a process whose
environment disagrees with the policy in force makes only exploratory runs.
"""

from __future__ import annotations

from typing import Any

from models_registry.policy_defaults import DEFAULT_GATES as DEFAULT_GATES
from models_registry.policy_defaults import (
    DEFAULT_VALIDATION_POLICY as DEFAULT_VALIDATION_POLICY,
)


def gates_for(model_name: str, stage: str) -> dict[str, Any]:
    """The thresholds of ``stage`` in the policy in force for ``model_name``."""
    from models_registry.policy import policy_in_force, stage_gates

    if stage not in DEFAULT_GATES:
        raise KeyError(f"unknown gate stage {stage!r}; known: {', '.join(DEFAULT_GATES)}")
    return stage_gates(policy_in_force(model_name), stage)


def validation_policy_for(model_name: str) -> dict[str, Any]:
    """Costs and window (``fee_bps``, ``slippage_bps``, ``days``, ``end``) in force."""
    from models_registry.policy import policy_in_force, window_policy

    return window_policy(policy_in_force(model_name))
