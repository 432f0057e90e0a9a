"""Reads for decision pages and mails: the policy a decision was made under, and what it loosens.

- ``policy_of(obj)``: the policy a run was judged under (a version: its deciding validation
  run's), or None for a run recorded before policies were data;
- ``policy_summary(obj)``: everything a page or mail shows about it (a plain dict);
- ``loosened_against_defaults(policy)``: each gate and cost looser than the shipped defaults;
- ``default_policy_verdict(run)``: what the shipped default policy would have said of a run,
  e.g. "the default policy would refuse: return -3.9% against buy-and-hold +47.6%; DSR 8% < 95%";
- ``plausibility_of_run(run)``: its "too good to be true" warnings ("check for leakage").

Used by the template tag ``{% policy_block obj %}`` (templatetags/registry_policy.py) and its
partial ``admin/models_registry/includes/policy_in_force.html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models_registry.models import ModelVersion, PaperTradingRun, ValidationPolicy, ValidationRun
from models_registry.policy import (
    Loosening,
    loosenings,
    plausibility_warnings,
    policy_in_force,
    policy_name,
)


def deciding_run(version: ModelVersion) -> ValidationRun | None:
    """The validation run a version's decision rests on: its passing policy run, else its last."""
    runs = version.validation_runs.filter(kind=ValidationRun.KIND_BACKTEST)
    passing = (
        runs.filter(status="passed", passed=True, in_sample=False, exploratory=False)
        .order_by("-created_at")
        .first()
    )
    return passing or runs.exclude(finished_at=None).order_by("-created_at").first()


def policy_of(obj: ModelVersion | ValidationRun | PaperTradingRun) -> ValidationPolicy | None:
    if isinstance(obj, ModelVersion):
        run = deciding_run(obj)
        return run.policy if run is not None else None
    return obj.policy


def loosened_against_defaults(policy: ValidationPolicy | None) -> list[Loosening]:
    return loosenings(policy.content) if policy is not None else []


@dataclass(frozen=True)
class DefaultVerdict:
    """What the shipped default policy would have said of a run."""

    passed: bool
    failures: list[str] = field(default_factory=list)
    cost_note: str = ""

    @property
    def text(self) -> str:
        if self.passed:
            verdict = "the default policy would pass this run"
        else:
            verdict = "the default policy would refuse: " + "; ".join(self.failures)
        return f"{verdict} ({self.cost_note})" if self.cost_note else verdict


def default_policy_verdict(run: ValidationRun | None) -> DefaultVerdict | None:
    """The shipped validation gates applied to the run's recorded metrics (None: no figures).

    The same judgement the verdict block shows (``verdicts.verdict_under_defaults``: one
    definition of what the shipped defaults say of a run), plus its leakage warnings.
    """
    from models_registry import verdicts

    if run is None or not run.metrics or not isinstance(run, ValidationRun):
        return None
    failures = [*verdicts.failures_under_defaults(run), *plausibility_of_run(run)]
    return DefaultVerdict(not failures, failures)


def plausibility_of_run(run: ValidationRun | None) -> list[str]:
    """The run's "check for leakage" warnings, under the policy it was judged by."""
    if run is None or not run.metrics:
        return []
    recorded = (run.config or {}).get("plausibility")
    if isinstance(recorded, list):
        return [str(w) for w in recorded]
    policy = run.policy or policy_in_force(run.model_version.name)
    return plausibility_warnings(run.metrics, policy)


def policy_summary(obj: ModelVersion | ValidationRun | PaperTradingRun) -> dict[str, Any]:
    """What a decision page or mail shows of the policy behind ``obj``."""
    version = obj if isinstance(obj, ModelVersion) else obj.model_version
    run: ValidationRun | PaperTradingRun | None
    run = deciding_run(obj) if isinstance(obj, ModelVersion) else obj
    policy = policy_of(obj)
    now = policy_in_force(version.name)
    loosened = _loosened_words(run, now)
    validation = run if isinstance(run, ValidationRun) else deciding_run(version)
    verdict = default_policy_verdict(validation) if loosened else None
    return {
        "policy": policy,
        "name": policy_name(policy) if policy is not None else "not recorded",
        "hash": policy.content_hash if policy is not None else "",
        "in_force_now": now,
        "in_force_now_name": policy_name(now),
        "changed_since": policy is not None and policy.pk != now.pk,
        "loosened": loosened,
        "default_verdict": verdict.text if verdict is not None else "",
        "default_passes": verdict.passed if verdict is not None else True,
        "plausibility": plausibility_of_run(validation),
        "exploratory_reasons": list(getattr(run, "exploratory_reasons", None) or []),
        "lineage_note": lineage_note(version),
    }


def _loosened_words(
    run: ValidationRun | PaperTradingRun | None, now: ValidationPolicy
) -> list[str]:
    """What the run's policy loosens, in the words of the verdict block (``verdicts``); with
    no run yet, what the policy in force now loosens."""
    from models_registry import verdicts

    if run is not None:
        return verdicts.judged_policy(run).loosened
    return [verdicts.loosening_words(item) for item in loosened_against_defaults(now)]


def policy_lines(obj: ModelVersion | ValidationRun | PaperTradingRun) -> list[str]:
    """The same as plain text lines, for mails."""
    summary = policy_summary(obj)
    lines = [f"Policy: {summary['name']}"]
    if summary["changed_since"]:
        lines.append(f"Policy in force now: {summary['in_force_now_name']}")
    for item in summary["loosened"]:
        lines.append(f"LOOSER than the shipped defaults: {item}")
    if summary["default_verdict"]:
        lines.append(summary["default_verdict"])
    lines.extend(f"WARNING: {w}" for w in summary["plausibility"])
    if summary["lineage_note"]:
        lines.append(summary["lineage_note"])
    return lines


def lineage_note(version: ModelVersion) -> str:
    """Said on a version whose lineage could not be verified at registration."""
    lineage = (version.metadata or {}).get("lineage_check") or {}
    if lineage.get("verified", True):
        return ""
    return (
        "Lineage NOT verified at registration ("
        + "; ".join(str(r) for r in lineage.get("reasons") or [])
        + f"): judged only on bars after its registration, from {lineage.get('judged_from')}"
    )
