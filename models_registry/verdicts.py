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

``judged_policy`` reads the run's recorded ``ValidationPolicy`` (issue 25: its name, number
and hash) and what it loosens (``selectors_policy.loosened_against_defaults``); only a run
recorded before policies were data falls back to its recorded thresholds, compared by the
same ``policy.loosenings``. There is one definition of "looser than the shipped defaults";
this module only puts each loosening into words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.backtest.errors import BacktestError
from engine.backtest.gates import AT_LEAST, AT_MOST, evaluate_gates
from engine.backtest.guards import IN_SAMPLE, OUT_OF_SAMPLE
from engine.backtest.reproduction import Reproduction
from models_registry import formatting
from models_registry.gates import DEFAULT_GATES
from models_registry.models import PaperTradingRun, RunStatus, ValidationRun
from models_registry.policy import (
    Loosening,
    loosenings,
    policy_name,
    shipped_policy_content,
    stage_gates,
)

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
    label: str = ""
    number: int | None = None
    content_hash: str = ""
    recorded: bool = False  # False: an old run, judged from its recorded thresholds
    note: str = ""

    @property
    def is_default(self) -> bool:
        return not self.loosened


def benchmark_words(benchmark: Any) -> str:
    return {"buy_and_hold": "buy-and-hold", "cash": "cash (the strategy's own returns)"}.get(
        str(benchmark), str(benchmark)
    )


def loosening_words(item: Loosening, stage: str = "validation") -> str:
    """One loosening as a person reads it; a gate of another stage names its stage."""
    parts = item.key.split(".")
    if item.key == "evidence":
        return f"judged on {item.in_force} (shipped: {item.shipped})"
    if item.key == "dsr_benchmark":
        return (
            f"skill measured against {benchmark_words(item.in_force)} (shipped: "
            f"{benchmark_words(item.shipped)}): riding the market can count as skill"
        )
    if parts[0] == "gates" and len(parts) == 3:
        gate_stage, name = parts[1], parts[2]
        prefix = "" if gate_stage == stage else f"{gate_stage} stage: "
        shipped = threshold_text(name, item.shipped)
        if item.in_force is None:
            return f"{prefix}{gate_label(name)} gate switched off (shipped: {shipped})"
        used = threshold_text(name, item.in_force)
        return f"{prefix}{gate_label(name)}: {used} (shipped: {shipped})"
    if parts[0] == "plausibility":
        name = parts[-1].replace("_", " ")
        if item.in_force is None:
            return f"leakage warning {name} switched off (shipped: {item.shipped:g})"
        return f"leakage warning {name}: {item.in_force:g} (shipped: {item.shipped:g})"
    if item.in_force is None:
        return f"{item.key.replace('_', ' ')}: not set (shipped: {item.shipped:g})"
    return f"{item.key.replace('_', ' ')}: {item.in_force:g} (shipped: {item.shipped:g})"


def loosened_gates(stage: str, used: Mapping[str, Any]) -> list[str]:
    """Each shipped default gate that ``used`` switches off (absent or None) or sets more
    kindly, in words: ``policy.loosenings`` on a policy with only these gates."""
    shipped = shipped_policy_content()
    content = {**shipped, "gates": {**shipped["gates"], stage: dict(used)}}
    prefix = f"gates.{stage}."
    return [loosening_words(i, stage) for i in loosenings(content) if i.key.startswith(prefix)]


def loosened_costs(policy: Mapping[str, Any]) -> list[str]:
    """Each cost or window length in ``policy`` lower than the shipped one (absent: shipped)."""
    shipped = shipped_policy_content()
    said = {k: policy[k] for k in POLICY_LOOSER_WHEN_LOWER if policy.get(k) is not None}
    content = {**shipped, **said}
    return [loosening_words(i) for i in loosenings(content) if i.key in POLICY_LOOSER_WHEN_LOWER]


def _recorded_thresholds(run: ValidationRun | PaperTradingRun) -> dict[str, Any]:
    """The gate set the run was judged under, from its record (gates it skipped are absent)."""
    config = run.config or {}
    if isinstance(run, ValidationRun) and isinstance(config.get("gates"), dict):
        return dict(config["gates"])
    # A gate result without a "threshold" key records no threshold (not even "off").
    return {
        str(g.get("name")): g.get("threshold")
        for g in (run.gate_results or [])
        if g.get("name") and g.get("name") != "out_of_sample" and "threshold" in g
    }


def judged_policy(run: ValidationRun | PaperTradingRun) -> JudgedPolicy:
    """The policy this run was judged under, and what it loosens against the shipped defaults.

    The recorded policy when the run has one; a run recorded before policies were data is
    judged from the thresholds it recorded.
    """
    stage = "validation" if isinstance(run, ValidationRun) else "paper"
    # The policy the run recorded (selectors_policy.policy_of, for a run; read here directly:
    # selectors_policy reads this module).
    policy = run.policy if getattr(run, "policy_id", None) else None
    if policy is not None:
        return JudgedPolicy(
            name=policy_name(policy),
            thresholds=stage_gates(policy, stage),
            loosened=[loosening_words(i, stage) for i in loosenings(policy.content)],
            label=policy.label,
            number=policy.number,
            content_hash=policy.content_hash,
            recorded=True,
        )
    thresholds = _recorded_thresholds(run)
    if not thresholds:
        # Not a loosening that is known: said as a note, and judged by its figures alone.
        return JudgedPolicy(
            name="not recorded",
            thresholds={},
            note="the run recorded neither a policy nor its thresholds: it cannot show which "
            "gates it met; only its figures are judged under the shipped defaults",
        )
    loosened = loosened_gates(stage, thresholds)
    if stage == "validation":
        loosened += loosened_costs((run.config or {}).get("policy") or {})
    name = "the shipped defaults" if not loosened else "a policy looser than the shipped defaults"
    return JudgedPolicy(
        name=f"{name} (no policy recorded: from the run's thresholds)",
        thresholds=thresholds,
        loosened=loosened,
    )


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
        recorded = ""
        if self.passed_only_loosened:
            recorded = " (it passed only under a loosened policy)"
        elif self.recorded_passed:
            recorded = " (it passed under gates that do not show why)"
        return f"{head}: the default policy would refuse it{recorded}: {reasons}"

    @property
    def passed_only_loosened(self) -> bool:
        return (
            bool(self.recorded_passed)
            and self.passes_defaults is False
            and bool(self.policy.loosened)
        )


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
    if name in ("min_dsr", "min_psr"):
        short = "DSR" if name == "min_dsr" else "PSR"
        return f"{gate_label(name)} ({short}) {shown}, below the {limit} needed"
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
        except (KeyError, TypeError, ValueError, BacktestError):
            failures.append(_failure_words(name, None, threshold, metrics))
            continue
        if not result.passed:
            value = result.value if isinstance(result.value, int | float) else None
            failures.append(_failure_words(name, value, threshold, metrics))
    if sample != OUT_OF_SAMPLE:
        failures.append(f"its window is {str(sample).replace('_', '-')}, not out of sample")
    return _weighed_first(failures) + _cheaper_costs(run)


# What an approver weighs first: against buy-and-hold, then luck (DSR), then the rest.
FIRST_WEIGHED = ("while buy-and-hold", "(DSR)", "(PSR)")


def _weighed_first(failures: list[str]) -> list[str]:
    def rank(text: str) -> int:
        found = [i for i, mark in enumerate(FIRST_WEIGHED) if mark in text]
        return found[0] if found else len(FIRST_WEIGHED)

    return sorted(failures, key=rank)


def _cheaper_costs(run: ValidationRun) -> list[str]:
    """Figures computed at costs below the shipped ones cannot meet the shipped policy."""
    engine = (run.config or {}).get("engine") or {}
    shipped = shipped_policy_content()
    return [
        f"its figures are at {name.replace('_', ' ')} {float(engine[name]):g} bps; the shipped "
        f"policy charges {float(shipped[name]):g}"
        for name in ("fee_bps", "slippage_bps")
        if isinstance(engine.get(name), int | float) and float(engine[name]) < float(shipped[name])
    ]


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


def failures_under_defaults(run: ValidationRun | PaperTradingRun) -> list[str]:
    """Each way the run's recorded figures fail the shipped default gates, in words."""
    return _validation_failures(run) if isinstance(run, ValidationRun) else _paper_failures(run)


def verdict_under_defaults(run: ValidationRun | PaperTradingRun, what: str = "") -> RunVerdict:
    """The run's recorded figures judged again under the shipped default gates."""
    is_validation = isinstance(run, ValidationRun)
    what = what or ("validation run" if is_validation else "paper run")
    finished = run.status in (RunStatus.PASSED, RunStatus.FAILED)
    failures = failures_under_defaults(run) if finished else []
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


def run_reproduction(run: ValidationRun) -> Reproduction | None:
    """Whether the file of a run judged on re-fitted folds reproduces from its recorded
    configuration (services.walk_forward); None for a run not judged on folds."""
    from models_registry.services.jobs import WALK_FORWARD_CONFIG_KEY

    folds = (run.config or {}).get(WALK_FORWARD_CONFIG_KEY) or {}
    if "fold_sharpes_per_bar" not in folds:  # not judged on folds, or not judged yet
        return None
    return Reproduction.from_dict(folds.get("reproduction")) or Reproduction.unchecked(
        "judged before tradebot checked reproduction"
    )


def reproduction_warning(run: ValidationRun, what: str) -> str | None:
    found = run_reproduction(run)
    if found is None or not found.warns:
        return None
    return f"{what} #{run.pk}: {found.sentence()}"


def verdict_warnings(
    verdicts: list[RunVerdict],
    validation: ValidationRun | None,
    production: ValidationRun | None,
    production_name: str = "",
) -> list[str]:
    """Warnings for a losing run, too few trades, a loosened policy or a loss to production.

    One line per run that fails the shipped defaults: its reasons are in its verdict line and
    what its policy loosens is under "Policy", neither is repeated here.
    """
    warnings = []
    for verdict in verdicts:
        if verdict.passes_defaults is not False:
            continue
        head = f"{verdict.what} #{verdict.pk}"
        count = len(verdict.failures)
        fails = "fails the shipped default gates" + (
            f" ({count} reasons, in its verdict above)" if count else ""
        )
        if verdict.passed_only_loosened:
            loosened = len(verdict.policy.loosened)
            warnings.append(
                f"{head} passed only under a loosened policy ({loosened} gates or costs "
                f"looser than the shipped defaults); it {fails}"
            )
        else:
            warnings.append(f"{head} {fails}")
    if validation is not None and production is not None:
        mine = _safe_float((validation.metrics or {}).get("total_return"))
        theirs = _safe_float((production.metrics or {}).get("total_return"))
        if mine is not None and theirs is not None and mine < theirs:
            warnings.append(
                f"on the same window it returned {formatting.percent(mine)}, less than the "
                f"{formatting.percent(theirs)} of {production_name or 'the production version'}"
            )
    return warnings
