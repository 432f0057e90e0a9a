"""What the version page and the decision pages say: state in words, the actions a user
may take now, and the evidence behind each decision.

Read-only: every function here queries; none writes. The services stay the only
place that decide; these functions only predict what the services will say, so a
button is shown only where its service could accept it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import HttpRequest
from django.urls import reverse

from models_registry import formatting, selectors, svg_charts, verdicts
from models_registry.gates import gates_for
from models_registry.models import (
    Approval,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import lifecycle

PRE_PRODUCTION = tuple(lifecycle.PRE_PRODUCTION_STATES)


@dataclass(frozen=True)
class ActionRule:
    name: str
    label: str
    permission: str
    states: tuple[str, ...]


# The source states each service accepts (models_registry.services.lifecycle/deployments).
ACTION_RULES: tuple[ActionRule, ...] = (
    ActionRule("validate_versions", "Validate", "validate_modelversion", (ModelState.TRAINED,)),
    ActionRule(
        "paper_trade_versions",
        "Replay pre-check",
        "papertrade_modelversion",
        (ModelState.VALIDATED,),
    ),
    # Staging starts the forward paper run; a staged version may go again (a new run).
    ActionRule(
        "stage_versions",
        "Deploy to staging (forward paper run)",
        "stage_modelversion",
        (ModelState.VALIDATED, ModelState.STAGED),
    ),
    ActionRule("approve_versions", "Approve", "approve_modelversion", (ModelState.PAPER_TESTED,)),
    ActionRule("reject_versions", "Reject", "reject_modelversion", PRE_PRODUCTION),
    ActionRule(
        "deploy_versions",
        "Deploy to production",
        "deploy_modelversion",
        (ModelState.APPROVED, ModelState.IN_PRODUCTION),
    ),
    ActionRule(
        "rollback_production",
        "Roll back production",
        "rollback_modelversion",
        (ModelState.IN_PRODUCTION,),
    ),
)
RULES_BY_NAME = {rule.name: rule for rule in ACTION_RULES}


def staff_user(request: HttpRequest) -> User:
    """The signed-in user behind an admin request: the admin is login-only, so an
    anonymous request reaching a service is refused rather than recorded as nobody."""
    if not isinstance(request.user, User):
        raise PermissionDenied("sign in to act in the admin")
    return request.user


def user_may(user: User, rule: ActionRule) -> bool:
    return user.has_perm(f"models_registry.{rule.permission}")


def actions_for_version(user: User, version: ModelVersion) -> list[dict[str, str]]:
    """The buttons for this user on this version in its state, each to its confirmation page.

    An action whose job is queued or running for this version is not offered again.
    """
    busy = {name for job in running_jobs(version) for name in job["blocks"]}
    return [
        {
            "name": rule.name,
            "label": rule.label,
            "url": reverse("admin:models_registry_version_action", args=[version.pk, rule.name]),
        }
        for rule in ACTION_RULES
        if _applies(rule, version) and user_may(user, rule) and rule.name not in busy
    ]


def _applies(rule: ActionRule, version: ModelVersion) -> bool:
    """The rule's source states; an approval also applies again once it was suspended."""
    if version.state in rule.states:
        return True
    return rule.name == "approve_versions" and lifecycle.needs_new_approval(version)


# --- jobs: what a queued action is doing now ----------------------------------------

PENDING_RUNS = (RunStatus.QUEUED, RunStatus.RUNNING)
DEPLOY_ACTIONS = ("stage_versions", "deploy_versions", "rollback_production")


def _job(kind: str, obj: Any, url_name: str, blocks: tuple[str, ...]) -> dict[str, Any]:
    from django.utils import timezone

    since = obj.started_at or obj.created_at
    seconds = int((timezone.now() - since).total_seconds()) if since else 0
    status = obj.get_status_display().lower()
    verb = "running for" if obj.status == RunStatus.RUNNING else "waiting for a worker for"
    finished = getattr(obj, "finished_at", None)
    return {
        "kind": kind,
        "pk": obj.pk,
        "status": obj.status,
        "status_text": status,
        "running": obj.status in (*PENDING_RUNS, *ACTIVE_DEPLOYMENTS),
        "progress": f"{verb} {seconds} s" if not finished else f"ended {formatting.utc(finished)}",
        "url": reverse(url_name, args=[obj.pk]),
        "blocks": blocks,
    }


ACTIVE_DEPLOYMENTS = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)


def running_jobs(version: ModelVersion) -> list[dict[str, Any]]:
    """This version's queued or running runs and deployments: three small queries."""
    jobs = [
        _job(f"validation run #{r.pk}", r, "admin:models_registry_validationrun_change",
             ("validate_versions",))
        for r in version.validation_runs.filter(status__in=PENDING_RUNS)
    ]  # fmt: skip
    jobs += [
        _job(f"{'forward paper run' if r.mode == 'forward' else 'replay'} #{r.pk}", r,
             "admin:models_registry_papertradingrun_change",
             ("paper_trade_versions",))
        for r in version.paper_runs.filter(status__in=PENDING_RUNS)
    ]  # fmt: skip
    jobs += [
        _job(f"{d.kind} #{d.pk} to {d.target.name}", d, "admin:models_registry_deployment_change",
             DEPLOY_ACTIONS)
        for d in version.deployments.filter(status__in=ACTIVE_DEPLOYMENTS).select_related("target")
    ]  # fmt: skip
    return jobs


def recent_jobs(version: ModelVersion, limit: int = 3) -> list[dict[str, Any]]:
    """The latest finished jobs of this version, newest first: the outcome of what was queued."""
    done: list[Any] = [
        *version.validation_runs.exclude(status__in=PENDING_RUNS).order_by("-id")[:limit],
        *version.paper_runs.exclude(status__in=PENDING_RUNS).order_by("-id")[:limit],
        *version.deployments.exclude(status__in=ACTIVE_DEPLOYMENTS)
        .exclude(status=DeploymentStatus.SCHEDULED)
        .select_related("target")
        .order_by("-id")[:limit],
    ]
    done.sort(key=lambda o: o.finished_at or o.created_at, reverse=True)
    names = {
        ValidationRun: ("validation run", "admin:models_registry_validationrun_change"),
        PaperTradingRun: ("paper run", "admin:models_registry_papertradingrun_change"),
        Deployment: ("deployment", "admin:models_registry_deployment_change"),
    }
    return [
        {
            "kind": f"{names[type(o)][0]} #{o.pk}",
            "status_text": o.get_status_display().lower(),
            "progress": f"ended {formatting.utc(o.finished_at)}",
            "url": reverse(names[type(o)][1], args=[o.pk]),
        }
        for o in done[:limit]
    ]


def jobs_payload(version: ModelVersion) -> dict[str, Any]:
    """What the version page polls while a job runs (JSON)."""
    jobs = running_jobs(version)
    return {
        "running": [{k: v for k, v in job.items() if k != "blocks"} for job in jobs],
        "recent": recent_jobs(version),
        "state": version.state,
        "next_step": next_step(version),
    }


def actions_for_states(user: User, states: set[str]) -> set[str]:
    """Bulk dropdown: the actions this user holds that apply to at least one state present."""
    return {
        rule.name
        for rule in ACTION_RULES
        if user_may(user, rule) and (not states or states & set(rule.states))
    }


# --- banner --------------------------------------------------------------------


def _served_targets() -> Any:
    """Targets annotated with the version their latest successful deployment put there.

    One query with a correlated subquery: portable to SQLite (no DISTINCT ON) and
    constant in the number of deployments. The order matches the fleet home's.
    """
    served = (
        Deployment.objects.filter(target=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .values("model_version_id")[:1]
    )
    return DeploymentTarget.objects.annotate(served_id=Subquery(served))


def live_targets(version: ModelVersion) -> list[DeploymentTarget]:
    """Targets whose latest successful deployment is this version."""
    return list(_served_targets().filter(served_id=version.pk).order_by("name"))


def next_step(version: ModelVersion) -> str:
    """The next step, or the blocker, in words."""
    state = version.state
    if state == ModelState.TRAINED:
        failed = _latest_failed(version.validation_runs.filter(kind=ValidationRun.KIND_BACKTEST))
        if failed:
            return (
                f"blocked: validation run #{failed.pk} failed {failed_gates(failed)}; "
                "retrain or re-validate"
            )
        return "next: an engineer validates it on out-of-sample data"
    if state == ModelState.VALIDATED:
        failed = _latest_failed(version.paper_runs.filter(mode=PaperTradingRun.MODE_REPLAY))
        if failed:
            return f"blocked: replay #{failed.pk} failed {failed_gates(failed)}"
        if selectors.passing_replay_run(version) is None:
            return "next: an engineer runs the replay pre-check on bars it never saw"
        return "next: an engineer deploys it to staging, where it paper trades forward"
    if state == ModelState.STAGED:
        forward = selectors.forward_run_of(version)
        if forward is None:
            return "next: its forward paper run on staging starts with the next staging deploy"
        summary = forward_evidence(forward)
        assert summary is not None
        return summary["warning"] or summary["sentence"]
    if state == ModelState.PAPER_TESTED:
        creator = version.created_by.get_username() if version.created_by else "its creator"
        others = [creator]
        if version.approval_requested_by and version.approval_requested_by != version.created_by:
            others.append(version.approval_requested_by.get_username())
        return f"waits for approval by someone other than {' and '.join(others)}"
    if state in (ModelState.APPROVED, ModelState.IN_PRODUCTION):
        latest = (
            version.approvals.order_by("-decided_at", "-id")
            .prefetch_related("suspensions__validation_run")
            .first()
        )
        suspension = latest.suspensions.all()[0] if latest and latest.suspensions.all() else None
        if suspension is not None:
            run = suspension.validation_run
            why = (
                f"re-validation #{run.pk} failed {failed_gates(run)}" if run else suspension.reason
            )
            return f"suspended: {why}; it needs a new approval before any deployment"
        if state == ModelState.APPROVED:
            return "next: a deployer deploys it to a production target"
        return "running in production; scheduled re-validations watch its health"
    if state == ModelState.REJECTED:
        latest = version.approvals.filter(decision=Approval.DECISION_REJECTED).first()
        return f"rejected{f': {latest.comment}' if latest else ''}; final"
    return "retired; final"


def _latest_failed(runs: Any) -> Any:
    latest = runs.order_by("-created_at").first()
    if latest and latest.status in (RunStatus.FAILED, RunStatus.ERROR):
        return latest
    return None


def failed_gates(run: Any) -> str:
    names = [g.get("name", "?") for g in (run.gate_results or []) if not g.get("passed")]
    return ", ".join(names) or run.status


def banner(user: User, version: ModelVersion) -> dict[str, Any]:
    targets = live_targets(version)
    jobs = jobs_payload(version)
    step = next_step(version)
    if jobs["running"]:
        # The queued action shows at once: the next step waits for it, not for a person.
        doing = "; ".join(f"{j['kind']} {j['status_text']}" for j in jobs["running"])
        step = f"in progress: {doing} (this page follows it); then, {step}"
    return {
        "state": version.get_state_display(),
        "state_code": version.state,
        "health": version.get_health_display(),
        "health_code": version.health,
        "targets": [t.name for t in targets],
        "next_step": step,
        "actions": actions_for_version(user, version),
        "jobs": jobs,
        "jobs_url": reverse("admin:models_registry_version_jobs", args=[version.pk]),
    }


# --- evidence for decision pages ------------------------------------------------

RUN_METRICS = ("total_return", "sharpe", "psr", "dsr", "trials", "max_drawdown", "win_rate")


def run_evidence(run: ValidationRun | PaperTradingRun | None, what: str) -> dict[str, Any] | None:
    if run is None:
        return None
    metrics = run.metrics or {}
    # A validation run counts trades in its metrics and has a window; a paper run has a period.
    if isinstance(run, ValidationRun):
        start, end, trades = run.window_start, run.window_end, metrics.get("trades")
        in_sample, benchmarks = run.in_sample, run.benchmark_metrics
    else:
        start, end, trades = run.period_start, run.period_end, run.trades
        in_sample, benchmarks = False, {}
    exploratory = bool(getattr(run, "exploratory", False))
    warnings = []
    if not trades:
        warnings.append(f"{what} #{run.pk} made 0 trades: its figures say nothing about skill")
    if exploratory:
        reasons = "; ".join(getattr(run, "exploratory_reasons", []) or []) or "no reason given"
        warnings.append(f"{what} #{run.pk} is exploratory ({reasons}): not evidence for approval")
    if in_sample:
        warnings.append(f"{what} #{run.pk} overlaps the training data (in-sample)")
    if isinstance(run, ValidationRun):
        reproduction = verdicts.reproduction_warning(run, what)
        if reproduction:
            warnings.append(reproduction)
    conditions = metrics.get("market_conditions") or metrics.get("regimes")
    if isinstance(conditions, dict):
        missing = [name for name, bars in conditions.items() if not bars]
        if missing:
            warnings.append(f"{what} #{run.pk} saw no {', '.join(missing)} market")
    return {
        "what": what,
        "run": run,
        "pk": run.pk,
        "status": run.get_status_display(),
        "window": formatting.window(start, end),
        "start": start,
        "end": end,
        "trades": trades if trades is not None else formatting.DASH,
        "metrics": [
            {"key": key, "text": formatting.metric(key, metrics.get(key))} for key in RUN_METRICS
        ],
        "benchmarks": benchmarks,
        "gates": [
            {
                "name": g.get("name"),
                "passed": bool(g.get("passed")),
                "value": _gate_number(g.get("name"), g.get("value")),
                "threshold": _gate_number(g.get("name"), g.get("threshold")),
            }
            for g in (run.gate_results or [])
        ],
        "warnings": warnings,
    }


def _gate_number(name: Any, value: Any) -> str:
    """Counts without decimals, fractions as %, the rest rounded: never ``1440.00``."""
    if value is None or isinstance(value, str):
        return formatting.DASH if value is None else value
    return verdicts.threshold_text(str(name or ""), value)


def _gate_key(name: Any) -> str:
    name = str(name or "")
    return "max_drawdown" if "drawdown" in name or "divergence" in name else name


def comparison_on_same_window(
    version: ModelVersion, validation: ValidationRun | None
) -> dict[str, Any]:
    """This version against what runs on production now, on the very same window, or say why not."""
    live = _production_versions(version)
    if not live:
        serving = [t.name for t in live_targets(version) if t.environment == Environment.PRODUCTION]
        if serving:
            return {
                "rows": [],
                "note": f"{version} is the version production runs now (on {', '.join(serving)});"
                " no other production version to compare with.",
            }
        return {"rows": [], "note": f"No {version.symbol} version runs on a production target now."}
    other, target = live[0]
    if validation is None:
        return {"rows": [], "note": f"{version} has no validation run to compare with {other}."}
    theirs = (
        ValidationRun.objects.filter(
            model_version=other,
            window_start=validation.window_start,
            window_end=validation.window_end,
            status__in=(RunStatus.PASSED, RunStatus.FAILED),
        )
        .order_by("-created_at")
        .first()
    )
    if theirs is None:
        return {
            "rows": [],
            "other": other,
            "target": target,
            "note": (
                f"{other} (on {target.name}) has no run on this window "
                f"({formatting.window(validation.window_start, validation.window_end)}); "
                "a comparison on different windows would not be like for like. "
                f"Validate {other} on this window first."
            ),
        }
    keys = ("total_return", "sharpe", "psr", "dsr", "max_drawdown", "trades", "win_rate")
    rows = [
        {
            "metric": key,
            "this": formatting.metric(key, validation.metrics.get(key)),
            "other": formatting.metric(key, theirs.metrics.get(key)),
        }
        for key in keys
        if key in validation.metrics or key in theirs.metrics
    ]
    return {
        "other": other,
        "target": target,
        "this_run": validation,
        "their_run": theirs,
        "window": formatting.window(validation.window_start, validation.window_end),
        "rows": rows,
        "note": "" if rows else "Neither run on this window recorded metrics to compare.",
    }


def _production_versions(version: ModelVersion) -> list[tuple[ModelVersion, DeploymentTarget]]:
    """Other versions of this symbol that production targets serve now: two queries."""
    targets = list(
        _served_targets()
        .filter(environment=Environment.PRODUCTION, served_id__isnull=False)
        .exclude(served_id=version.pk)
        .order_by("name")
    )
    served = ModelVersion.objects.filter(symbol=version.symbol).in_bulk(
        [t.served_id for t in targets]
    )
    return [(served[t.served_id], t) for t in targets if t.served_id in served]


def decision_evidence(version: ModelVersion, environment: str) -> dict[str, Any]:
    validation = lifecycle.passing_validation_run(version) or (
        version.validation_runs.filter(kind=ValidationRun.KIND_BACKTEST)
        .order_by("-created_at")
        .first()
    )
    replay = selectors.passing_replay_run(version) or (
        version.paper_runs.filter(mode=PaperTradingRun.MODE_REPLAY).order_by("-created_at").first()
    )
    forward_run = selectors.forward_run_of(version)
    runs = [
        e
        for e in (
            run_evidence(validation, "validation run"),
            run_evidence(replay, "replay"),
            run_evidence(forward_run, "forward paper run"),
        )
        if e
    ]
    comparison = comparison_on_same_window(version, validation)
    # The paper evidence the verdict reads: the forward run once there is one.
    verdict = verdict_block(version, validation, forward_run or replay, comparison)
    warnings = [*verdict["warnings"], *(w for e in runs for w in e["warnings"])]
    if validation is None:
        warnings.append("no out-of-sample validation run")
    if replay is None:
        warnings.append("no replay pre-check")
    forward = forward_evidence(forward_run)
    if forward is None:
        warnings.append("no forward paper run on staging: nothing has traded unseen bars yet")
    elif forward["warning"]:
        warnings.append(forward["warning"])
    targets = DeploymentTarget.objects.filter(environment=environment).prefetch_related("hosts")
    return {
        "version": version,
        "state": version.get_state_display(),
        "sha256": version.onnx_sha256,
        "created_by": version.created_by.get_username() if version.created_by else "—",
        "created_at": formatting.utc(version.created_at),
        "lineage": formatting.window(version.data_start, version.data_end),
        "out_of_sample_from": formatting.utc(version.out_of_sample_from),
        "next_step": next_step(version),
        "runs": runs,
        "forward": forward,
        "warnings": warnings,
        "comparison": comparison,
        "verdict": verdict,
        "search": (version.metadata or {}).get("search"),
        "strategy": (version.metadata or {}).get("strategy"),
        "targets": [
            {
                "name": t.name,
                "hosts": [str(h) for h in t.hosts.all()] or ["local"],
                "window": t.allowed_hours,
            }
            for t in targets
        ],
        "gate_thresholds": gates_for(version.name, "validation"),
    }


def forward_evidence(run: PaperTradingRun | None) -> dict[str, Any] | None:
    """The forward paper run as a decision page shows it, live while it runs."""
    if run is None:
        return None
    forward = (run.metrics or {}).get("forward") or {}
    period = int((run.config or {}).get("period_bars") or 0)
    bars = int(forward.get("bars") or run.bars or 0)
    figures = {
        "return": forward.get("total_return", (run.metrics or {}).get("total_return")),
        "buy_and_hold": forward.get(
            "buy_and_hold_return", (run.metrics or {}).get("buy_and_hold_return")
        ),
        "divergence": forward.get("replay_divergence"),
    }
    sentence = (
        f"Forward paper run #{run.pk} on {run.target.name if run.target else '?'}: "
        f"{bars} of {period} bars ({bars / 24:.1f} of {period / 24:.1f} days), "
        f"{run.trades} fills"
    )
    if figures["return"] is not None and figures["buy_and_hold"] is not None:
        sentence += (
            f", return {figures['return']:+.2%} against buy-and-hold "
            f"{figures['buy_and_hold']:+.2%} over the same bars"
        )
    if figures["divergence"] is not None:
        sentence += f", {figures['divergence']:.2%} from a replay of the same candles"
    sentence += f"; {run.get_status_display().lower()}."
    return {
        "run": run,
        "pk": run.pk,
        "status": run.status,
        "sentence": sentence,
        "bars": bars,
        "period_bars": period,
        **figures,
        "attention": run.error if run.status == RunStatus.NEEDS_ATTENTION else "",
        "warning": _forward_warning(run, bars, period, figures),
    }


def _forward_warning(run: PaperTradingRun, bars: int, period: int, figures: dict[str, Any]) -> str:
    if run.status == RunStatus.NEEDS_ATTENTION:
        return f"forward paper run #{run.pk} needs attention: {run.error}"
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return f"forward paper run #{run.pk} is still running ({bars} of {period} bars)"
    if run.status == RunStatus.ERROR:
        return f"forward paper run #{run.pk} ended in error: {run.error}"
    if not run.passed:
        return f"forward paper run #{run.pk} failed its gates"
    ret, bench = figures["return"], figures["buy_and_hold"]
    if ret is not None and bench is not None and ret < bench:
        return (
            f"forward paper run #{run.pk} returned {ret:+.2%}, less than buy-and-hold "
            f"{bench:+.2%} over the same bars"
        )
    return ""


# --- the verdict block: what a decision page says first -----------------------------

THIS_COLOUR, HOLD_COLOUR, PRODUCTION_COLOUR = "#0d6efd", "#777777", "#d62728"


def _paper_label(run: PaperTradingRun | None) -> str:
    forward = run is not None and run.mode == PaperTradingRun.MODE_FORWARD
    return "forward paper run" if forward else "replay"


def verdict_block(
    version: ModelVersion,
    validation: ValidationRun | None,
    paper: PaperTradingRun | None,
    comparison: dict[str, Any],
) -> dict[str, Any]:
    """The policy, each run's verdict under the shipped defaults, production, one chart."""
    judged = [
        verdicts.verdict_under_defaults(run, what)
        for run, what in ((validation, "validation run"), (paper, _paper_label(paper)))
        if run is not None
    ]
    production_run = comparison.get("their_run")
    warnings = verdicts.verdict_warnings(
        judged, validation, production_run, str(comparison.get("other") or "")
    )
    policies = [
        {"what": f"{v.what} #{v.pk}", "name": v.policy.name, "loosened": v.policy.loosened}
        for v in judged
    ]
    policy = decision_policy(version, judged)
    warnings += [w for w in policy["plausibility"] if w not in warnings]
    return {
        "policies": policies,
        "policy": policy,
        "loosened": any(p["loosened"] for p in policies),
        "verdicts": [
            {"text": v.text, "passes": v.passes_defaults, "pk": v.pk, "what": v.what}
            for v in judged
        ],
        "passes_defaults": bool(judged) and all(v.passes_defaults for v in judged),
        "warnings": warnings,
        "comparison": comparison,
        "chart": equity_against_hold_and_production(
            version, validation, production_run, comparison
        ),
    }


def decision_policy(version: ModelVersion, judged: list[verdicts.RunVerdict]) -> dict[str, Any]:
    """The policy part of the verdict block: said once for the runs judged under it.

    Runs judged under the same policy share one entry (name, hash, what it loosens in red);
    then the leakage warnings, the exploratory reasons and the lineage note of the version
    (``selectors_policy.policy_summary``), and what is in force now if that changed since.
    """
    from models_registry.selectors_policy import policy_summary

    grouped: dict[tuple[str, tuple[str, ...], str], list[str]] = {}
    for v in judged:
        key = (v.policy.name, tuple(v.policy.loosened), v.policy.note)
        grouped.setdefault(key, []).append(f"{v.what} #{v.pk}")
    summary = policy_summary(version)
    if not grouped:
        # No evidence yet: what the version would be judged under now.
        key = (summary["in_force_now_name"], tuple(summary["loosened"]), "no run yet")
        grouped[key] = ["in force now"]
    return {
        "judged": [
            {"what": ", ".join(runs), "name": name, "loosened": list(loosened), "note": note}
            for (name, loosened, note), runs in grouped.items()
        ],
        "changed_since": summary["changed_since"],
        "in_force_now_name": summary["in_force_now_name"],
        "plausibility": summary["plausibility"],
        "exploratory_reasons": summary["exploratory_reasons"],
        "lineage_note": summary["lineage_note"],
    }


def equity_against_hold_and_production(
    version: ModelVersion,
    validation: ValidationRun | None,
    production_run: ValidationRun | None,
    comparison: dict[str, Any],
) -> Any:
    """One chart: this version's equity, buy-and-hold's and production's, on one window."""
    from models_registry.selectors import stored_curve

    mine = stored_curve(validation)
    title = f"{version}: return since the start of its validation window"
    if mine is None:
        return svg_charts.no_data(title)
    lines = [svg_charts.Series(str(version), THIS_COLOUR, _curve_points(mine, "strategy"))]
    lines.append(
        svg_charts.Series("buy and hold", HOLD_COLOUR, _curve_points(mine, "buy_and_hold"), "6 4")
    )
    theirs = stored_curve(production_run)
    if theirs is not None:
        label = f"{comparison.get('other')} (production)"
        lines.append(svg_charts.Series(label, PRODUCTION_COLOUR, _curve_points(theirs, "strategy")))
    return svg_charts.lines_chart(
        lines, title=title, y_format=lambda y: formatting.percent(float(y) - 1.0)
    )


def _curve_points(curve: dict[str, Any], key: str) -> list[tuple[Any, float]]:
    from datetime import datetime

    values = curve.get(key) or []
    stamps = curve.get("index") or []
    return [
        (datetime.fromisoformat(stamp), float(value))
        for stamp, value in zip(stamps, values, strict=False)
        if value is not None
    ]


def rollback_preview(target: DeploymentTarget, model_name: str | None) -> dict[str, Any]:
    """Which version a rollback of this target restores now, or why it cannot."""
    from models_registry.models import RegistryError
    from models_registry.services.deployments import _rollback_destination, live_version_on_target

    current = live_version_on_target(target)
    if current is None:
        reason = f"nothing has been deployed to {target.name}: nothing to roll back."
        return {"target": target, "current": None, "restores": None, "reason": reason}
    try:
        restores = _rollback_destination(target, current, model_name or current.name, None)
        lifecycle.require_deployable_approval(restores)
    except RegistryError as exc:
        return {"target": target, "current": current, "restores": None, "reason": str(exc)}
    return {"target": target, "current": current, "restores": restores, "reason": ""}


def restorable_versions(model_name: str | None) -> list[tuple[DeploymentTarget, ModelVersion]]:
    """(target, version) pairs a rollback can restore now: ran there, not live, approved.

    The rollback preview's version comes first for each target, so the form's default is
    one that can be restored.
    """
    from models_registry.services.deployments import live_version_on_target

    pairs: list[tuple[DeploymentTarget, ModelVersion]] = []
    for target in DeploymentTarget.objects.filter(environment=Environment.PRODUCTION).order_by(
        "name"
    ):
        current = live_version_on_target(target)
        if current is None:
            continue
        name = model_name or current.name
        preview = rollback_preview(target, name)["restores"]
        ran = (
            ModelVersion.objects.filter(
                name=name,
                deployments__target=target,
                deployments__status=DeploymentStatus.SUCCEEDED,
            )
            .exclude(pk=current.pk)
            .distinct()
            .order_by("-version")
            .prefetch_related(
                Prefetch(
                    "approvals",
                    queryset=Approval.objects.order_by("-decided_at", "-id").prefetch_related(
                        "suspensions"
                    ),
                )
            )[:RESTORABLE_LIMIT]
        )
        candidates = sorted(ran, key=lambda v: (preview is None or v.pk != preview.pk, -v.version))
        pairs += [(target, version) for version in candidates if _approval_in_force(version)]
    return pairs


RESTORABLE_LIMIT = 20


def _approval_in_force(version: ModelVersion) -> bool:
    """lifecycle.current_approval on prefetched rows: a constant number of queries per page."""
    approvals = list(version.approvals.all())
    latest = approvals[0] if approvals else None
    return (
        latest is not None
        and latest.decision == Approval.DECISION_APPROVED
        and latest.sha256 == version.onnx_sha256
        and not latest.suspensions.all()
    )
