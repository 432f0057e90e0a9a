"""What a decision page says first: each evidence run judged again under the shipped defaults.

Read-only selectors. A run records the thresholds it was judged under (a validation run
in ``config["gates"]`` and ``config["policy"]``, a paper run in its gate results); the
shipped defaults are ``models_registry.gates.DEFAULT_GATES`` and
``DEFAULT_VALIDATION_POLICY``. Two questions, answered from the record alone:

- ``judged_policy(run)``: the thresholds the run was judged under, and in words what they
  loosen against the shipped defaults (a gate switched off, a lower bar, lower costs);
- ``verdict_under_defaults(run)``: the run's recorded metrics judged again under the
  shipped defaults, each failure in words ("returned -3.87 % while buy-and-hold made
  +47.60 %").

The policy-as-data work replaces ``judged_policy`` with a lookup of the recorded policy;
nothing else here needs to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.backtest.gates import ABOVE, AT_LEAST, AT_MOST, GATE_RULES, evaluate_gates
from engine.backtest.guards import IN_SAMPLE, OUT_OF_SAMPLE
from models_registry import formatting
from models_registry.gates import DEFAULT_GATES, DEFAULT_VALIDATION_POLICY
from models_registry.models import PaperTradingRun, RunStatus, ValidationRun

# Paper gates compare like the engine's: min_* at least, max_* at most.
PAPER_RULES: dict[str, str] = {
    "min_bars": AT_LEAST,
    "max_drawdown": AT_MOST,
    "max_divergence": AT_MOST,
}
# Costs and window of the validation policy: less of each judges a model more kindly.
POLICY_LOOSER_WHEN_LOWER = ("fee_bps", "slippage_bps", "days")
FRACTION_GATES = frozenset(
    {
        "max_drawdown",
        "max_divergence",
        "min_dsr",
        "min_psr",
        "total_return_above",
        "min_total_return",
        "beats_buy_and_hold_by",
        "beats_always_flat_by",
        "min_excess_return",
        "min_win_rate",
        "max_hit_rate_drop",
        "max_live_divergence",
    }
)
COUNT_GATES = frozenset({"min_trades", "min_bars"})
GATE_WORDS = {
    "min_dsr": "deflated Sharpe ratio",
    "min_psr": "probabilistic Sharpe ratio",
    "total_return_above": "return after costs",
    "beats_buy_and_hold_by": "return above buy-and-hold's",
    "beats_always_flat_by": "return above staying out of the market",
    "max_drawdown": "worst loss (drawdown)",
    "max_divergence": "paper/backtest divergence",
    "min_trades": "trades",
    "min_bars": "bars judged",
    "min_sharpe": "Sharpe ratio",
}


def threshold_text(name: str, value: Any) -> str:
    """A threshold as people read it: a percentage, a whole count, or a rounded number."""
    if value is None:
        return "off"
    if name in COUNT_GATES:
        try:
            return f"{float(value):,.0f}"
        except (TypeError, ValueError):
            return str(value)
    if name in FRACTION_GATES:
        return formatting.percent(value)
    return formatting.number(value)


def gate_label(name: str) -> str:
    return GATE_WORDS.get(name, name.replace("_", " "))


# --- the policy a run was judged under ----------------------------------------------------


@dataclass(frozen=True)
class JudgedPolicy:
    """The thresholds a run was judged under and what they loosen against the shipped ones."""

    name: str
    thresholds: dict[str, Any]
    loosened: list[str] = field(default_factory=list)

    @property
    def is_default(self) -> bool:
        return not self.loosened


def _direction(stage: str, name: str) -> str | None:
    if stage == "paper":
        return PAPER_RULES.get(name)
    rule = GATE_RULES.get(name)
    return rule[1] if rule else None


def _is_looser(direction: str | None, used: float, default: float) -> bool:
    if direction in (AT_LEAST, ABOVE):
        return used < default
    if direction == AT_MOST:
        return used > default
    return used != default


def loosened_gates(stage: str, used: Mapping[str, Any]) -> list[str]:
    """Each shipped default gate that ``used`` switches off or sets more kindly, in words."""
    words = []
    for name, default in DEFAULT_GATES[stage].items():
        if default is None:
            continue
        value = used.get(name, default) if name in used else None
        if value is None:
            words.append(
                f"{gate_label(name)} gate switched off (shipped: {threshold_text(name, default)})"
            )
            continue
        try:
            looser = _is_looser(_direction(stage, name), float(value), float(default))
        except (TypeError, ValueError):
            looser = True
        if looser:
            words.append(
                f"{gate_label(name)}: {threshold_text(name, value)} "
                f"(shipped: {threshold_text(name, default)})"
            )
    return words


def loosened_costs(policy: Mapping[str, Any]) -> list[str]:
    words = []
    for key in POLICY_LOOSER_WHEN_LOWER:
        default, used = DEFAULT_VALIDATION_POLICY.get(key), policy.get(key)
        if default is None or used is None:
            continue
        try:
            if float(used) < float(default):
                words.append(f"{key.replace('_', ' ')}: {used:g} (shipped: {default:g})")
        except (TypeError, ValueError):
            continue
    return words


def _recorded_thresholds(run: ValidationRun | PaperTradingRun) -> dict[str, Any]:
    """The gate set the run was judged under, from its record (gates it skipped are absent)."""
    config = run.config or {}
    if isinstance(run, ValidationRun) and isinstance(config.get("gates"), dict):
        return dict(config["gates"])
    return {
        str(g.get("name")): g.get("threshold")
        for g in (run.gate_results or [])
        if g.get("name") and g.get("name") != "out_of_sample"
    }


def judged_policy(run: ValidationRun | PaperTradingRun) -> JudgedPolicy:
    """The policy this run was judged under, and what it loosens against the shipped defaults."""
    stage = "validation" if isinstance(run, ValidationRun) else "paper"
    thresholds = _recorded_thresholds(run)
    if not thresholds:
        return JudgedPolicy(
            name="not recorded",
            thresholds={},
            loosened=["the run recorded no thresholds: it cannot show it met the shipped ones"],
        )
    loosened = loosened_gates(stage, thresholds)
    if stage == "validation":
        loosened += loosened_costs((run.config or {}).get("policy") or {})
    name = "the shipped defaults" if not loosened else "a policy looser than the shipped defaults"
    return JudgedPolicy(name=name, thresholds=thresholds, loosened=loosened)


# --- the run judged again under the shipped defaults --------------------------------------


@dataclass(frozen=True)
class RunVerdict:
    what: str
    pk: int
    status: str
    recorded_passed: bool | None
    passes_defaults: bool | None
    failures: list[str]
    policy: JudgedPolicy

    @property
    def text(self) -> str:
        head = f"{self.what} #{self.pk}"
        if self.status not in (RunStatus.PASSED, RunStatus.FAILED):
            return f"{head} is {self.status}: no verdict yet"
        if self.passes_defaults:
            return f"{head} passes the shipped default gates"
        reasons = "; ".join(self.failures) or "see its gates"
        recorded = " (it passed only under a loosened policy)" if self.recorded_passed else ""
        return f"{head} fails the shipped default gates{recorded}: {reasons}"

    @property
    def passed_only_loosened(self) -> bool:
        return bool(self.recorded_passed) and self.passes_defaults is False


def _validation_metrics(run: ValidationRun) -> dict[str, Any]:
    metrics = dict(run.metrics or {})
    metrics.setdefault("buy_and_hold", dict(run.benchmark_metrics or {}))
    if "n_trades" not in metrics and "trades" in metrics:
        metrics["n_trades"] = metrics["trades"]
    if "n_bars" not in metrics and "bars" in metrics:
        metrics["n_bars"] = metrics["bars"]
    return metrics


def _failure_words(name: str, value: Any, threshold: Any, metrics: Mapping[str, Any]) -> str:
    """One failed gate as a sentence a person reads without the gate's name."""
    if value is None:
        return f"{gate_label(name)} was not recorded (needs {threshold_text(name, threshold)})"
    if name == "beats_buy_and_hold_by":
        hold = (metrics.get("buy_and_hold") or {}).get("total_return")
        return (
            f"returned {formatting.percent(metrics.get('total_return'))} while buy-and-hold "
            f"made {formatting.percent(hold)}"
        )
    if name == "total_return_above":
        return f"lost money after costs ({formatting.percent(value)})"
    if name == "beats_always_flat_by":
        return "did worse than staying out of the market"
    shown, limit = threshold_text(name, value), threshold_text(name, threshold)
    if name == "min_trades":
        return f"made {shown} trades, fewer than the {limit} needed"
    if name == "min_bars":
        return f"judged on {shown} bars, fewer than the {limit} needed"
    if name.startswith("max_"):
        return f"{gate_label(name)} {shown}, above the {limit} allowed"
    return f"{gate_label(name)} {shown}, below the {limit} needed"


def _safe_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _validation_failures(run: ValidationRun) -> list[str]:
    metrics = _validation_metrics(run)
    sample = metrics.get("sample_status") or (IN_SAMPLE if run.in_sample else OUT_OF_SAMPLE)
    failures = []
    for name, threshold in DEFAULT_GATES["validation"].items():
        if threshold is None:
            continue
        try:
            result = evaluate_gates(metrics, {name: threshold}, sample_status=OUT_OF_SAMPLE)[0]
        except (KeyError, TypeError, ValueError):
            failures.append(_failure_words(name, None, threshold, metrics))
            continue
        if not result.passed:
            value = result.value if isinstance(result.value, int | float) else None
            failures.append(_failure_words(name, value, threshold, metrics))
    if sample != OUT_OF_SAMPLE:
        failures.append(f"its window is {str(sample).replace('_', '-')}, not out of sample")
    return failures


def _paper_failures(run: PaperTradingRun) -> list[str]:
    values = {
        "min_bars": run.bars,
        "max_drawdown": (run.metrics or {}).get("max_drawdown"),
        "max_divergence": (run.divergence or {}).get("equity_relative"),
    }
    failures = []
    for name, threshold in DEFAULT_GATES["paper"].items():
        if threshold is None:
            continue
        value = _safe_float(values.get(name))
        rule = PAPER_RULES.get(name, AT_LEAST)
        ok = value is not None and (value >= threshold if rule == AT_LEAST else value <= threshold)
        if not ok:
            failures.append(_failure_words(name, value, threshold, {}))
    return failures


def verdict_under_defaults(run: ValidationRun | PaperTradingRun, what: str = "") -> RunVerdict:
    """The run's recorded figures judged again under the shipped default gates."""
    is_validation = isinstance(run, ValidationRun)
    what = what or ("validation run" if is_validation else "paper run")
    finished = run.status in (RunStatus.PASSED, RunStatus.FAILED)
    failures = (
        (_validation_failures(run) if isinstance(run, ValidationRun) else _paper_failures(run))
        if finished
        else []
    )
    return RunVerdict(
        what=what,
        pk=run.pk,
        status=run.status,
        recorded_passed=run.passed,
        passes_defaults=(not failures) if finished else None,
        failures=failures,
        policy=judged_policy(run),
    )


# --- warnings a decision page may never leave out -----------------------------------------


def verdict_warnings(
    verdicts: list[RunVerdict],
    validation: ValidationRun | None,
    production: ValidationRun | None,
    production_name: str = "",
) -> list[str]:
    """Warnings for a losing run, too few trades, a loosened policy or a loss to production."""
    warnings = []
    for verdict in verdicts:
        if verdict.passes_defaults is not False:
            continue
        head = f"{verdict.what} #{verdict.pk}"
        if verdict.passed_only_loosened:
            warnings.append(
                f"{head} passed only under a loosened policy "
                f"({'; '.join(verdict.policy.loosened) or 'see its gates'})"
            )
        else:
            warnings.append(f"{head} fails the shipped default gates")
        warnings.extend(f"{head}: {failure}" for failure in verdict.failures)
    if validation is not None and production is not None:
        mine = _safe_float((validation.metrics or {}).get("total_return"))
        theirs = _safe_float((production.metrics or {}).get("total_return"))
        if mine is not None and theirs is not None and mine < theirs:
            warnings.append(
                f"on the same window it returned {formatting.percent(mine)}, less than the "
                f"{formatting.percent(theirs)} of {production_name or 'the production version'}"
            )
    return warnings
