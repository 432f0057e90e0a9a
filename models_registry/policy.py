"""The validation policy in force: costs, windows and every stage's gates, read from the registry.

The policy is data (``models.ValidationPolicy``): append-only, content-hashed, changed only by
the four-eyes transitions in ``services.policies``. This module reads it:

- ``policy_in_force(model_name)``: the row a run of that model is judged under (the model's
  own confirmed policy, else the default's);
- ``cost_policy_for(model_name)``: the one ``CostPolicy`` that validation, paper runs,
  monitoring's live comparison and the hosts' engine config all take;
- ``settings_disagreement(model_name, policy)``: why a process whose environment
  (``TRADEBOT_GATES`` and friends) says something else may only make exploratory runs.

The environment seeds the first policy when the registry is first used after its database
was created, and is never read as policy again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from engine.backtest.deflated import DSR_BENCHMARKS
from models_registry.models import PolicyConfirmation, RegistryError, ValidationPolicy
from models_registry.policy_defaults import DEFAULT_GATES, DEFAULT_VALIDATION_POLICY

# The environment variables that may seed the first policy (and nothing more).
POLICY_SETTINGS = (
    "TRADEBOT_GATES",
    "TRADEBOT_GATE_OVERRIDES",
    "TRADEBOT_VALIDATION_POLICY",
    "TRADEBOT_VALIDATION_POLICY_OVERRIDES",
)
STAGES = ("validation", "paper", "drift")
WINDOW_KEYS = (
    "fee_bps", "slippage_bps", "days", "end", "refit_folds", "fold_days", "dsr_benchmark",
)  # fmt: skip
# Keys a policy written before they existed may lack, read as what the registry did before
# them: one window, and the DSR already on the excess over buy-and-hold. Never the shipped
# value, which may have changed since: a stored policy changes only by four-eyes proposal.
ABSENT_MEANS: dict[str, Any] = {
    "refit_folds": 0,
    "fold_days": 90,
    "dsr_benchmark": "buy_and_hold",
}
COST_KEYS = ("fee_bps", "slippage_bps")

# "Too good to be true": not a gate unless ``as_gate`` is true. An annual Sharpe ratio above
# the ceiling, or a worst loss below the floor for the time spent in the market, is what a
# leak looks like far more often than skill (issue 25: a leaky model showed Sharpe 30.8 with
# a 0.26% drawdown).
SHIPPED_PLAUSIBILITY: dict[str, Any] = {
    "max_annual_sharpe": 5.0,
    "min_drawdown_per_exposure": 0.02,
    "as_gate": False,
}
LEAKAGE_WARNING = "check for leakage"


class PolicyContentError(ValueError):
    """A policy's content is malformed; the message names the key and what is wrong."""


def shipped_policy_content() -> dict[str, Any]:
    """The shipped defaults: what the registry is seeded with when no environment says more."""
    return {
        **{key: DEFAULT_VALIDATION_POLICY[key] for key in WINDOW_KEYS},
        "gates": copy.deepcopy(DEFAULT_GATES),
        "plausibility": dict(SHIPPED_PLAUSIBILITY),
    }


def canonical_policy_json(content: Mapping[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def policy_content_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_policy_json(content).encode()).hexdigest()


def policy_content_check(content: Any) -> dict[str, Any]:
    """A full, well-formed policy content, or PolicyContentError naming the first bad key."""
    if not isinstance(content, Mapping):
        raise PolicyContentError(f"a policy is a JSON object, got {type(content).__name__}")
    shipped = shipped_policy_content()
    unknown = sorted(set(content) - set(shipped))
    if unknown:
        raise PolicyContentError(f"unknown policy key(s) {unknown}; known: {sorted(shipped)}")
    missing = sorted(set(shipped) - set(content))
    if missing:
        raise PolicyContentError(f"policy key(s) {missing} missing")
    for key in ("fee_bps", "slippage_bps", "days", "fold_days"):
        _number(content[key], key, positive=key in ("days", "fold_days"))
    folds = content["refit_folds"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0:
        raise PolicyContentError(f"refit_folds must be a whole number of folds >= 0, got {folds!r}")
    if content["dsr_benchmark"] not in DSR_BENCHMARKS:
        raise PolicyContentError(
            f"dsr_benchmark must be one of {list(DSR_BENCHMARKS)}, got {content['dsr_benchmark']!r}"
        )
    if content["end"] is not None and not isinstance(content["end"], str):
        raise PolicyContentError(f"end must be an ISO date or null, got {content['end']!r}")
    gates = content["gates"]
    if not isinstance(gates, Mapping) or sorted(gates) != sorted(STAGES):
        raise PolicyContentError(f"gates must hold exactly the stages {list(STAGES)}")
    for stage, thresholds in gates.items():
        if not isinstance(thresholds, Mapping):
            raise PolicyContentError(f"gates.{stage} must be an object of thresholds")
        for name, value in thresholds.items():
            if value is not None:  # None switches a shipped gate off (listed as loosened)
                _number(value, f"gates.{stage}.{name}", signed=True)
    plausibility = content["plausibility"]
    if not isinstance(plausibility, Mapping) or sorted(plausibility) != sorted(
        SHIPPED_PLAUSIBILITY
    ):
        raise PolicyContentError(f"plausibility must hold exactly {sorted(SHIPPED_PLAUSIBILITY)}")
    for name in ("max_annual_sharpe", "min_drawdown_per_exposure"):
        _number(plausibility[name], f"plausibility.{name}")
    if not isinstance(plausibility["as_gate"], bool):
        raise PolicyContentError("plausibility.as_gate must be true or false")
    return json.loads(canonical_policy_json(content))


def _number(value: Any, name: str, *, positive: bool = False, signed: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyContentError(f"{name} must be a finite number, got {value!r}")
    if signed:
        return  # a threshold may be below zero (e.g. beats_buy_and_hold_by -0.05)
    if value < 0 or (positive and value == 0):
        raise PolicyContentError(f"{name} must be {'more than' if positive else 'at least'} 0")


# --- what the environment says -----------------------------------------------------------------


def settings_policy_overrides(model_name: str | None) -> dict[str, Any]:
    """The policy keys this process's environment sets explicitly, as dotted names.

    ``model_name=None`` gives the default's; a name adds its per-model overrides.
    """
    said: dict[str, Any] = {}
    gates = getattr(settings, "TRADEBOT_GATES", {}) or {}
    policy = getattr(settings, "TRADEBOT_VALIDATION_POLICY", {}) or {}
    per_model_gates: Mapping[str, Any] = {}
    per_model_policy: Mapping[str, Any] = {}
    if model_name is not None:
        per_model_gates = (getattr(settings, "TRADEBOT_GATE_OVERRIDES", {}) or {}).get(
            model_name, {}
        )
        per_model_policy = (
            getattr(settings, "TRADEBOT_VALIDATION_POLICY_OVERRIDES", {}) or {}
        ).get(model_name, {})
    for source in (gates, per_model_gates):
        for stage, thresholds in (source or {}).items():
            for name, value in (thresholds or {}).items():
                said[f"gates.{stage}.{name}"] = value
    for source in (policy, per_model_policy):
        for key, value in (source or {}).items():
            said[key] = value
    return said


def content_with(base: Mapping[str, Any], dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with dotted keys (``gates.validation.min_dsr``, ``fee_bps``) replaced."""
    content = {**ABSENT_MEANS, **copy.deepcopy(dict(base))}  # an older policy made whole
    for key, value in dotted.items():
        parts = key.split(".")
        node = content
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise PolicyContentError(f"unknown policy key {key!r}")
            node = node[part]
        node[parts[-1]] = value
    return content


def value_at(content: Mapping[str, Any], dotted: str) -> Any:
    node: Any = content
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def settings_disagreement(model_name: str, policy: ValidationPolicy) -> list[str]:
    """Why this process may not judge ``model_name`` under ``policy`` (empty: it agrees).

    Only what the environment sets explicitly is compared: a silent environment agrees.
    """
    reasons = []
    for key, said in sorted(settings_policy_overrides(model_name).items()):
        in_force = value_at(policy.content, key)
        if _same(said, in_force):
            continue
        reasons.append(
            f"this process's settings ({', '.join(POLICY_SETTINGS)}) say {key}={said!r}, but "
            f"the policy in force ({policy_name(policy)}) says {in_force!r}: the environment "
            "seeds the first policy only, a change needs a confirmed policy proposal"
        )
    return reasons


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


# --- the policy in force ------------------------------------------------------------------------


def policy_in_force(model_name: str) -> ValidationPolicy:
    """The confirmed policy a run of ``model_name`` is judged under (seeding on first use)."""
    for scope in (model_name, ""):
        found = _latest_confirmed(scope)
        if found is not None:
            return found
    validation_policy_seed()
    found = _latest_confirmed(model_name) or _latest_confirmed("")
    if found is None:  # pragma: no cover - the seed always confirms a default
        raise RuntimeError("no validation policy in force after seeding")
    return found


def _latest_confirmed(scope: str) -> ValidationPolicy | None:
    return (
        ValidationPolicy.objects.filter(scope=scope, confirmation__isnull=False)
        .select_related("confirmation")
        .order_by("-confirmation__id")
        .first()
    )


def policy_name(policy: ValidationPolicy) -> str:
    scope = f"for {policy.scope}" if policy.scope else "default"
    return f'"{policy.label}" v{policy.number} ({scope}, sha256 {policy.content_hash[:12]})'


def policy_reference(policy: ValidationPolicy) -> dict[str, Any]:
    """What a run records of the policy it was judged under."""
    return {
        "id": policy.pk,
        "label": policy.label,
        "scope": policy.scope,
        "number": policy.number,
        "hash": policy.content_hash,
    }


def stage_gates(policy: ValidationPolicy, stage: str) -> dict[str, Any]:
    if stage not in STAGES:
        raise KeyError(f"unknown gate stage {stage!r}; known: {', '.join(STAGES)}")
    return dict(policy.content["gates"][stage])


def window_policy(policy: ValidationPolicy) -> dict[str, Any]:
    content = policy.content
    return {key: content[key] if key in content else ABSENT_MEANS[key] for key in WINDOW_KEYS}


@dataclass(frozen=True)
class CostPolicy:
    """What a fill costs, in basis points: one object for validation, paper, monitoring, hosts."""

    fee_bps: float
    slippage_bps: float

    @classmethod
    def of(cls, policy: ValidationPolicy) -> CostPolicy:
        return cls(float(policy.content["fee_bps"]), float(policy.content["slippage_bps"]))

    def below(self, other: CostPolicy) -> list[str]:
        """How these costs fall short of ``other`` (a higher cost is only stricter)."""
        return [
            f"{name} {getattr(self, name):g} is below the policy's {getattr(other, name):g}"
            for name in COST_KEYS
            if getattr(self, name) < getattr(other, name)
        ]

    def engine_options(self) -> dict[str, float]:
        return {"fee_bps": self.fee_bps, "slippage_bps": self.slippage_bps}


def cost_policy_for(model_name: str) -> CostPolicy:
    return CostPolicy.of(policy_in_force(model_name))


# --- looser than the shipped defaults ----------------------------------------------------------


@dataclass(frozen=True)
class Loosening:
    """One gate or cost a policy sets looser than the shipped defaults."""

    key: str
    shipped: Any
    in_force: Any

    @property
    def text(self) -> str:
        if self.in_force is None:
            return f"{self.key} is off (shipped default {self.shipped!r})"
        return f"{self.key} {self.in_force!r} (shipped default {self.shipped!r})"


def _looser(key: str, shipped: Any, value: Any) -> bool:
    if value is None:
        return shipped is not None  # a gate removed
    if not isinstance(shipped, int | float) or not isinstance(value, int | float):
        return False
    name = key.rsplit(".", 1)[-1]
    if name.startswith("max_"):
        return float(value) > float(shipped)
    # min_*, *_above, beats_*_by, costs and the window length: lower is looser.
    return float(value) < float(shipped)


def evidence_words(content: Mapping[str, Any]) -> str:
    """What a policy validation is judged on, in words: its re-fitted folds or one window."""
    folds = int(content.get("refit_folds") or 0)
    if folds > 0:
        return f"{folds} re-fitted walk-forward folds of {float(content['fold_days']):g} days"
    return f"one {float(content['days']):g}-day window"


def _evidence_days(content: Mapping[str, Any]) -> float:
    folds = int(content.get("refit_folds") or 0)
    return folds * float(content.get("fold_days") or 0) if folds > 0 else float(content["days"])


def evidence_looser(content: Mapping[str, Any], shipped: Mapping[str, Any]) -> bool:
    """Less evidence than shipped: one window where the shipped policy re-fits folds, or
    fewer days of out-of-sample bars. Either has less power to tell an edge from luck."""
    if int(shipped.get("refit_folds") or 0) > 0 and int(content.get("refit_folds") or 0) <= 0:
        return True
    return _evidence_days(content) < _evidence_days(shipped)


def loosenings(content: Mapping[str, Any]) -> list[Loosening]:
    shipped = shipped_policy_content()
    found = []
    if evidence_looser(content, shipped):
        found.append(Loosening("evidence", evidence_words(shipped), evidence_words(content)))
    benchmark = content.get("dsr_benchmark", ABSENT_MEANS["dsr_benchmark"])
    if benchmark != shipped["dsr_benchmark"]:
        found.append(Loosening("dsr_benchmark", shipped["dsr_benchmark"], benchmark))
    for key in (*COST_KEYS, "days"):
        if _looser(key, shipped[key], content.get(key)):
            found.append(Loosening(key, shipped[key], content.get(key)))
    for stage in STAGES:
        for name, default in shipped["gates"][stage].items():
            value = (content.get("gates") or {}).get(stage, {}).get(name)
            if _looser(f"gates.{stage}.{name}", default, value):
                found.append(Loosening(f"gates.{stage}.{name}", default, value))
    plausibility = content.get("plausibility") or {}
    for name in ("max_annual_sharpe", "min_drawdown_per_exposure"):
        if _looser(name, SHIPPED_PLAUSIBILITY[name], plausibility.get(name)):
            found.append(
                Loosening(f"plausibility.{name}", SHIPPED_PLAUSIBILITY[name], plausibility[name])
            )
    return found


# --- too good to be true ------------------------------------------------------------------------


def plausibility_warnings(metrics: Mapping[str, Any], policy: ValidationPolicy) -> list[str]:
    """Each way the figures look too good to be true, ending in "check for leakage"."""
    limits = policy.content.get("plausibility") or SHIPPED_PLAUSIBILITY
    warnings = []
    sharpe = _as_float(metrics.get("sharpe"))
    ceiling = float(limits["max_annual_sharpe"])
    if sharpe is not None and sharpe > ceiling:
        warnings.append(
            f"annual Sharpe ratio {sharpe:.2f} is above the policy's ceiling of "
            f"{ceiling:g}: {LEAKAGE_WARNING}"
        )
    drawdown = _as_float(metrics.get("max_drawdown"))
    exposure = _as_float(metrics.get("exposure"))
    floor = float(limits["min_drawdown_per_exposure"])
    if drawdown is not None and exposure is not None and exposure > 0:
        per_exposure = abs(drawdown) / exposure
        if per_exposure < floor:
            warnings.append(
                f"worst drawdown {abs(drawdown):.2%} over {exposure:.0%} of the "
                f"bars in the market is below the policy's floor of {floor:.2%} per unit of "
                f"exposure: {LEAKAGE_WARNING}"
            )
    return warnings


def plausibility_gate(
    metrics: Mapping[str, Any], policy: ValidationPolicy
) -> dict[str, Any] | None:
    """The "plausible" gate, only where the policy makes the warning a gate."""
    if not (policy.content.get("plausibility") or {}).get("as_gate"):
        return None
    warnings = plausibility_warnings(metrics, policy)
    return {
        "name": "plausible",
        "passed": not warnings,
        "value": "; ".join(warnings) or "plausible",
        "threshold": "no leakage warning",
        "metric": "sharpe, max_drawdown, exposure",
        "detail": "the policy makes the too-good-to-be-true warning a gate",
    }


def _as_float(value: Any) -> float | None:
    """A finite number as a float; None for anything else (missing, NaN, a flag)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# --- seeding: the one write a reader may make, when the registry holds no policy yet ------
# Here and not in services.policies, which reads this module: the first read seeds.


class PolicyChangeRefused(RegistryError):
    """A policy proposal or confirmation was refused; the message says why."""


def validation_policy_seed() -> list[ValidationPolicy]:
    """Seed the first policies, only when the registry holds none; returns what it wrote."""
    if ValidationPolicy.objects.exists():
        return []
    try:
        with transaction.atomic():
            base = content_with(shipped_policy_content(), settings_policy_overrides(None))
            said = bool(settings_policy_overrides(None))
            written = [_seed_row("", base, "environment" if said else "shipped defaults")]
            names = set(getattr(settings, "TRADEBOT_GATE_OVERRIDES", {}) or {}) | set(
                getattr(settings, "TRADEBOT_VALIDATION_POLICY_OVERRIDES", {}) or {}
            )
            for name in sorted(names):
                own = content_with(shipped_policy_content(), settings_policy_overrides(name))
                written.append(_seed_row(name, own, "environment"))
            return written
    except IntegrityError:
        return []  # another process seeded at the same moment: its seed stands
    except PolicyContentError as exc:
        raise PolicyChangeRefused(f"the environment cannot seed the policy: {exc}") from exc


def _seed_row(scope: str, content: dict[str, Any], source: str) -> ValidationPolicy:
    from models_registry.services.audit import audit_event_record

    checked = policy_content_check(content)
    policy = ValidationPolicy.objects.create(
        scope=scope,
        number=1,
        label=scope or "default",
        content=checked,
        content_hash=policy_content_hash(checked),
        seeded_from=source,
        comment=f"seeded from the {source} when the registry was first used",
    )
    PolicyConfirmation.objects.create(policy=policy)
    audit_event_record(
        event_type="policy_seeded",
        obj=policy,
        data={
            "scope": scope,
            "number": 1,
            "source": source,
            "hash": policy.content_hash,
            "new": checked,
        },
    )
    return policy
