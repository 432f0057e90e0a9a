"""Monitoring what runs in production: scheduled re-validation, drift, live against backtest.

Celery beat calls ``revalidate_production`` daily (through the tasks in
``models_registry.tasks.monitoring``). Each in-production version is backtested on bars it
has never been judged on: the window starts after its training data and after its
previous scheduled window, and ends at the last stored bar, so every scheduled run is
out-of-sample by construction and no bar is judged twice. The run is checked against the
version's validation gates and against drift rules relative to its baseline (the passing
out-of-sample validation that let it into production), and the engine's journal from each
production target is compared trade by trade with a backtest over the same bars.

A failing run flags the version ``degraded`` (its lifecycle state stays ``in_production``:
health is not the protected state, and rolling back stays a human decision) and suspends
its approval, so it cannot be deployed again anywhere until someone approves it anew.
A later passing run shows it ``recovered``; the approval is not restored.

A slot (the UTC date for the daily run, ``wf-<ISO week>`` for the weekly walk-forward
report) makes at most one run per version: beat firing twice or a redelivered task finds
the existing run, and the database's unique constraint settles a race.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployment.connection import HostConnection, HostConnectionError, open_connection
from engine.backtest import BacktestError, run_backtest
from engine.backtest.report import json_safe
from engine.data import (
    DataError,
    StoreEmptyError,
    interval_timedelta,
    read_candles,
    read_sentiment,
    stored_candle_range,
)
from engine.live.journal import JournalError, read_journal
from engine.live.paper import FILL_COLUMNS, round_trips
from models_registry.events import EventType
from models_registry.gates import gates_for
from models_registry.models import (
    ApprovalSuspension,
    DeploymentTarget,
    Environment,
    HealthStatus,
    ModelState,
    ModelVersion,
    RunStatus,
    ValidationRun,
)
from models_registry.policy import CostPolicy, cost_policy_for
from models_registry.services import lifecycle
from models_registry.services.audit import audit_event_record
from models_registry.services.deployments import live_version_on_target, target_spec
from models_registry.services.model_versions import version_dir
from models_registry.services.notifications import approvers_emails, deployers_emails
from models_registry.services.runs import run_claim, validation_run_complete
from models_registry.services.validation import (
    ValidationOptions,
    validation_backtest_for_run,
    validation_outcome,
    validation_report_publish,
)
from models_registry.transitions import VERSION_HEALTH, transition

logger = logging.getLogger(__name__)

STRATEGY = "ml_basic"
WALK_FORWARD_PARTS = 4
WALK_FORWARD_SLOT_PREFIX = "wf-"
# The engine keeps one journal per symbol and mode (engine.live.journal.journal_path);
# rotated archives carry a timestamp in their name and are not the live record.
JOURNAL_NAME = re.compile(r"^(?P<symbol>[a-z0-9]+)-(?P<mode>live|paper)\.jsonl$")
JOURNAL_SUBDIR = "var/journal"
# Trade times are bar open times; prices are compared relative to the backtest's.
PRICE_EPSILON = 1e-12


# --- results -----------------------------------------------------------------------------------


@dataclass
class ScheduledResult:
    """What one scheduled slot of one version came to: a run, or the reason there is none."""

    model_version_id: int
    slot: str
    run: ValidationRun | None = None
    created: bool = False
    skipped: str = ""

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        version = ModelVersion.objects.get(pk=self.model_version_id)
        return {
            "model_version": self.model_version_id,
            "version": str(version),
            "slot": self.slot,
            "health": version.health,
            "created": self.created,
            "skipped": self.skipped,
            "run": None
            if run is None
            else {
                "id": run.pk,
                "status": run.status,
                "passed": run.passed,
                "window_start": run.window_start.isoformat() if run.window_start else None,
                "window_end": run.window_end.isoformat() if run.window_end else None,
                "failed_gates": [g.get("name") for g in run.gate_results if not g.get("passed")],
                "error": run.error,
            },
        }


@dataclass(frozen=True)
class ScheduledWindow:
    """[start, stop) of the bars a scheduled run judges, and roughly how many there are."""

    start: pd.Timestamp
    stop: pd.Timestamp
    bars: int


class WindowUnavailable(Exception):
    """There is nothing (or not enough) new to judge; the message says why."""


# --- the window ----------------------------------------------------------------------------------


def daily_slot(now: datetime | None = None) -> str:
    return (now or timezone.now()).astimezone(UTC).date().isoformat()


def weekly_slot(now: datetime | None = None) -> str:
    year, week, _ = (now or timezone.now()).astimezone(UTC).isocalendar()
    return f"{WALK_FORWARD_SLOT_PREFIX}{year}-W{week:02d}"


def min_new_bars(version: ModelVersion) -> int:
    """Bars a scheduled run needs: ``drift.min_new_bars``, else what a validation needs.

    Judged on fewer bars than the original validation, the same gates would be noisier;
    so by default a daily run waits (and says so) until as many new bars have arrived.
    """
    drift = gates_for(version.name, "drift")
    if "min_new_bars" in drift:
        return int(drift["min_new_bars"])
    return int(gates_for(version.name, "validation").get("min_bars", 1))


def baseline_run(version: ModelVersion) -> ValidationRun | None:
    """The passing out-of-sample validation the version went to production on."""
    return lifecycle.passing_validation_run(version)


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def first_unjudged_bar(version: ModelVersion) -> pd.Timestamp:
    """After the training data and after every window this version was already judged on."""
    step = interval_timedelta(version.interval)
    oos = version.out_of_sample_from or (version.metadata or {}).get("out_of_sample_from")
    if not oos:
        raise WindowUnavailable(
            f"{version} has no out_of_sample_from: a scheduled run could not prove its window "
            "is out-of-sample"
        )
    start = _utc(oos).ceil(step)
    previous_end = version.last_scheduled_window_end
    if previous_end is None:
        baseline = baseline_run(version)
        previous_end = baseline.window_end if baseline is not None else None
    if previous_end is not None:
        # window_end is the open time of the window's last bar: the next bar is new.
        start = max(start, _utc(previous_end) + step)
    return start


def scheduled_window(version: ModelVersion, data_dir: Path | None = None) -> ScheduledWindow:
    """The bars since the last judgement, up to the last stored bar; raises WindowUnavailable."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    step = interval_timedelta(version.interval)
    start = first_unjudged_bar(version)
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    if stored is None:
        raise WindowUnavailable(
            f"no {version.symbol} {version.interval} candles stored in {data_dir}"
        )
    stop = stored[1] + step
    bars = max(0, int((stop - start) / step))
    needed = min_new_bars(version)
    if bars < needed:
        raise WindowUnavailable(
            f"{bars} new {version.interval} bars since {start.isoformat()} (last stored bar "
            f"{stored[1].isoformat()}); a scheduled run needs at least {needed} "
            "(gate drift.min_new_bars)"
        )
    return ScheduledWindow(start, stop, bars)


# --- drift rules -----------------------------------------------------------------------------


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rule(name: str, passed: bool, value: Any, threshold: Any, detail: str) -> dict[str, Any]:
    return {
        "name": name,
        "passed": bool(passed),
        "value": value,
        "threshold": threshold,
        "metric": name.removeprefix("drift_"),
        "detail": detail,
    }


def drift_rules(
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    gates: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Gate-shaped results of the drift rules: drops against the baseline, a drawdown limit."""
    results: list[dict[str, Any]] = []
    baseline = baseline or {}
    for name, key, limit_key in (
        ("drift_sharpe_drop", "sharpe", "max_sharpe_drop"),
        ("drift_hit_rate_drop", "win_rate", "max_hit_rate_drop"),
    ):
        if limit_key not in gates:
            continue
        limit = float(gates[limit_key])
        now, then = _number(metrics, key), _number(baseline, key)
        if key == "win_rate" and not _number(metrics, "n_trades"):
            # No trade closed in the window: there is no hit rate to compare (min_trades judges it).
            results.append(_rule(name, True, None, limit, "no trades in the window"))
            continue
        if now is None or then is None:
            results.append(
                _rule(name, True, None, limit, f"{key} missing from the run or its baseline")
            )
            continue
        drop = then - now
        results.append(
            _rule(name, drop <= limit, drop, limit, f"{key} {then:.4g} at baseline, {now:.4g} now")
        )
    if "max_drawdown" in gates:
        limit = float(gates["max_drawdown"])
        drawdown = _number(metrics, "max_drawdown")
        passed = drawdown is None or drawdown <= limit
        results.append(
            _rule("drift_max_drawdown", passed, drawdown, limit, "drawdown in the window")
        )
    return results


def live_rule(live: Mapping[str, Any], gates: Mapping[str, Any]) -> dict[str, Any] | None:
    """Fail when any production journal diverges from the backtest beyond the tolerance."""
    if "max_live_divergence" not in gates:
        return None
    limit = float(gates["max_live_divergence"])
    compared = [c for c in live.get("comparisons", []) if c.get("compared")]
    if not compared:
        return None
    worst = max(compared, key=lambda c: c["divergence"])
    return _rule(
        "drift_live_divergence",
        worst["divergence"] <= limit,
        worst["divergence"],
        limit,
        f"worst: {worst.get('target')} {worst.get('host')} {worst.get('file')}",
    )


# --- live against backtest ----------------------------------------------------------------------


def _journal_dir(install_root: str) -> str:
    return f"{install_root.rstrip('/')}/{JOURNAL_SUBDIR}"


def _list_journals(connection: HostConnection, folder: str, timeout: float) -> list[str]:
    result = connection.run(f"ls -1 {shlex.quote(folder)}", timeout=timeout)
    if not result.ok:
        return []  # no journal folder: the engine has not run there yet
    return sorted(n for n in result.stdout.split() if JOURNAL_NAME.match(n))


def collect_journal(target: DeploymentTarget) -> list[dict[str, Any]]:
    """The engine's journals from every host of ``target``, read through the deploy connection.

    One dict per journal file: ``target``, ``host``, ``file``, ``records`` (validated by
    ``engine.live.journal.read_journal``) or ``error`` when the host or the file could not
    be read; an unreachable host is reported, not raised, so one host does not hide others.
    """
    spec = target_spec(target)
    journals: list[dict[str, Any]] = []
    scratch = Path(tempfile.mkdtemp(prefix="journal-"))
    try:
        for host in spec.hosts:
            folder = _journal_dir(host.install_root or spec.install_root)
            where = {"target": target.name, "host": host.label}
            try:
                connection = open_connection(spec, host)
            except HostConnectionError as exc:
                journals.append({**where, "file": None, "error": str(exc)})
                continue
            try:
                for name in _list_journals(connection, folder, spec.command_timeout):
                    local = scratch / f"{len(journals)}-{name}"
                    try:
                        connection.get(f"{folder}/{name}", local)
                        records, _ = read_journal(local)
                    except (HostConnectionError, JournalError) as exc:
                        journals.append({**where, "file": name, "error": str(exc)})
                        continue
                    journals.append({**where, "file": name, "records": records})
            finally:
                connection.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return journals


def version_records(version: ModelVersion, records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The records of the sessions this exact file (sha256) ran; another model's are not its."""
    kept: list[dict[str, Any]] = []
    running: str | None = None
    for record in records:
        if record.get("type") == "session_start":
            running = record.get("model_sha256")
        if running == version.onnx_sha256:
            kept.append(dict(record))
    return kept


def _live_fills(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        (_utc(r["candle"]), r["side"], float(r["quantity"]), float(r["price"]), float(r["fee"]),
         "signal")
        for r in records
        if r.get("type") == "fill"
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=FILL_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _start_equity(records: list[dict[str, Any]], first_decision: int) -> tuple[float, float]:
    """Equity and position held just before the first compared decision."""
    before = [r for r in records[:first_decision] if r.get("type") == "state"]
    if before:
        return float(before[-1]["equity"]), float(before[-1]["quantity"])
    after = next(r for r in records if r.get("type") == "state")
    return float(after.get("equity") or after["cash"]), 0.0


def _relative(live: float, expected: float) -> float:
    return abs(live - expected) / max(abs(expected), PRICE_EPSILON)


def compare_live_with_backtest(
    version: ModelVersion,
    journal_trades: list[dict[str, Any]],
    candles: pd.DataFrame,
    *,
    sentiment: pd.Series | None = None,
    costs: CostPolicy | None = None,
) -> dict[str, Any]:
    """Backtest the version on the bars its journal covers and compare trade by trade.

    ``journal_trades`` are the journal's records (as ``collect_journal`` returns them);
    ``candles`` must cover those bars plus the model's warm-up history. The divergence is
    the largest of: the final equity's relative gap, the largest relative gap of an entry
    or exit price, and the share of trades whose count or entry/exit bar differ. ``costs``
    default to the policy in force for the version's name (the ones its hosts trade at).
    """
    costs = costs if costs is not None else cost_policy_for(version.name)
    records = version_records(version, journal_trades)
    # A decision without a prediction is the engine warming up: it cannot trade there, while
    # the backtest (given the history) could, so the comparison starts at its first prediction.
    decisions = [
        i
        for i, r in enumerate(records)
        if r.get("type") == "decision" and r.get("prediction") is not None
    ]
    states = [r for r in records if r.get("type") == "state" and r.get("last_candle")]
    if not decisions or not states:
        return {"compared": False, "reason": f"no decisions of {version} in the journal"}
    window_start = _utc(records[decisions[0]]["candle"])
    window_end = _utc(states[-1]["last_candle"])
    if candles.empty or candles.index[-1] < window_end or candles.index[0] > window_start:
        return {
            "compared": False,
            "reason": f"the store does not hold the journal's bars {window_start} to {window_end}",
        }
    start_equity, start_position = _start_equity(records, decisions[0])
    try:
        from engine.backtest.runner import load_predictor

        backtest = run_backtest(
            STRATEGY,
            candles.loc[:window_end],
            sentiment=sentiment,
            predictor=load_predictor(version_dir(version)),
            metadata=version.metadata,
            start=window_start,
            end=window_end,
            initial_equity=start_equity,
            fee_bps=costs.fee_bps,
            slippage_bps=costs.slippage_bps,
            allow_in_sample=True,  # behaviour is compared here, not performance
            check_lookahead=False,
        )
    except BacktestError as exc:
        return {"compared": False, "reason": f"backtest failed: {exc}"}
    index = candles.loc[window_start:window_end].index
    live_trades = round_trips(_live_fills(records), index, float(candles["close"].loc[window_end]))
    expected = backtest.result.trades
    live_final = float(states[-1]["equity"])
    report = _trade_by_trade(live_trades, expected)
    equity_gap = _relative(live_final, backtest.result.final_equity)
    report.update(
        {
            "compared": True,
            "window_start": window_start.isoformat(),
            "window_end": window_end.isoformat(),
            "bars": len(index),
            "start_equity": start_equity,
            "started_with_position": start_position != 0.0,
            "live_final_equity": live_final,
            "backtest_final_equity": backtest.result.final_equity,
            "final_equity_divergence": equity_gap,
        }
    )
    report["divergence"] = max(
        equity_gap, report["max_price_divergence"], report["trade_mismatch_share"]
    )
    return json_safe(report)


def _trade_by_trade(live: pd.DataFrame, expected: pd.DataFrame) -> dict[str, Any]:
    mismatches: list[dict[str, Any]] = []
    worst_price = 0.0
    pairs = min(len(live), len(expected))
    for number in range(pairs):
        ours, theirs = live.iloc[number], expected.iloc[number]
        gaps = {
            "entry_price": _relative(float(ours["entry_price"]), float(theirs["entry_price"])),
            "exit_price": _relative(float(ours["exit_price"]), float(theirs["exit_price"])),
        }
        worst_price = max(worst_price, *gaps.values())
        same_times = _utc(ours["entry_time"]) == _utc(theirs["entry_time"]) and _utc(
            ours["exit_time"]
        ) == _utc(theirs["exit_time"])
        if not same_times or max(gaps.values()) > PRICE_EPSILON * 1e6:
            mismatches.append(
                {
                    "trade": number + 1,
                    "live_entry": f"{_utc(ours['entry_time']).isoformat()} @ {ours['entry_price']}",
                    "backtest_entry": f"{_utc(theirs['entry_time']).isoformat()} "
                    f"@ {theirs['entry_price']}",
                    "live_exit": f"{_utc(ours['exit_time']).isoformat()} @ {ours['exit_price']}",
                    "backtest_exit": f"{_utc(theirs['exit_time']).isoformat()} "
                    f"@ {theirs['exit_price']}",
                    "same_times": bool(same_times),
                    **{f"{k}_divergence": v for k, v in gaps.items()},
                }
            )
    unmatched = abs(len(live) - len(expected))
    timing_mismatches = sum(1 for m in mismatches if not m["same_times"])
    total = max(len(live), len(expected), 1)
    return {
        "live_trades": len(live),
        "backtest_trades": len(expected),
        "mismatched_trades": mismatches[:20],
        "mismatch_count": len(mismatches) + unmatched,
        "max_price_divergence": worst_price,
        "trade_mismatch_share": (timing_mismatches + unmatched) / total,
    }


def live_comparison(version: ModelVersion, data_dir: Path | None = None) -> dict[str, Any]:
    """Compare every production journal of ``version`` with a backtest over its bars."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    targets = [
        t
        for t in DeploymentTarget.objects.filter(environment=Environment.PRODUCTION)
        if live_version_on_target(t) == version
    ]
    comparisons: list[dict[str, Any]] = []
    if not targets:
        return {"targets": [], "comparisons": comparisons}
    try:
        candles = read_candles(data_dir, version.symbol, version.interval).frame
        sentiment = _sentiment_for(version, data_dir)
    except DataError as exc:
        return {"targets": [t.name for t in targets], "error": str(exc), "comparisons": []}
    for target in targets:
        for journal in collect_journal(target):
            where = {k: journal.get(k) for k in ("target", "host", "file")}
            if "error" in journal:
                comparisons.append({**where, "compared": False, "reason": journal["error"]})
                continue
            found = compare_live_with_backtest(
                version, journal["records"], candles, sentiment=sentiment
            )
            comparisons.append({**where, **found})
    return {"targets": [t.name for t in targets], "comparisons": comparisons}


def _sentiment_for(version: ModelVersion, data_dir: Path) -> pd.Series | None:
    if not (version.metadata or {}).get("uses_sentiment"):
        return None
    try:
        return read_sentiment(data_dir).frame
    except StoreEmptyError:
        return None


# --- health changes ----------------------------------------------------------------------------


def model_version_flag_degraded(
    *, model_version: ModelVersion, validation_run: ValidationRun, reason: str
) -> ModelVersion:
    """Flag a version degraded and suspend its approval in force; one audit event, mail after.

    The lifecycle state is left alone (the version keeps running where it runs: rolling back
    is a human decision). Nothing is recorded again when the version is already degraded
    and no approval is in force, so a model failing day after day does not flood approvers.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        approval = lifecycle.current_approval(version)
        old_health = version.health
        if old_health == HealthStatus.DEGRADED and approval is None:
            logger.info("%s is still degraded (run #%s)", version, validation_run.pk)
            return version
        suspension = None
        if approval is not None:
            suspension = ApprovalSuspension.objects.create(
                approval=approval, reason=reason, validation_run=validation_run
            )
        version = transition(
            machine=VERSION_HEALTH,
            row=version,
            to=HealthStatus.DEGRADED,
            event=EventType.MODEL_VERSION_DEGRADED,
            fields={"health_changed_at": timezone.now()},
            data={
                "state": version.state,
                "validation_run": validation_run.pk,
                "scheduled_slot": validation_run.scheduled_slot,
                "reason": reason,
                "suspended_approval": approval.pk if approval else None,
                "suspension": suspension.pk if suspension else None,
            },
        )
        transaction.on_commit(
            lambda: notify_approvers_degraded(version.pk, validation_run.pk, reason), robust=True
        )
    model_version.refresh_from_db()
    return version


def model_version_mark_passing(
    *, model_version: ModelVersion, validation_run: ValidationRun
) -> ModelVersion:
    """A passing scheduled run: degraded becomes recovered (audited); the approval stays off."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        old_health = version.health
        if old_health in (HealthStatus.HEALTHY, HealthStatus.RECOVERED):
            return version
        recovered = old_health == HealthStatus.DEGRADED
        version = transition(
            machine=VERSION_HEALTH,
            row=version,
            to=HealthStatus.RECOVERED if recovered else HealthStatus.HEALTHY,
            event=(
                EventType.MODEL_VERSION_RECOVERED if recovered else EventType.MODEL_VERSION_HEALTHY
            ),
            fields={"health_changed_at": timezone.now()},
            data={
                "validation_run": validation_run.pk,
                "scheduled_slot": validation_run.scheduled_slot,
                **({"approval_restored": False} if recovered else {}),
            },
        )
    model_version.refresh_from_db()
    return version


def notify_approvers_degraded(version_id: int, run_id: int, reason: str) -> int:
    """E-mail the approvers; a mail fault is logged and never undoes the recorded flag."""
    version = ModelVersion.objects.get(pk=version_id)
    # Approvers decide on the approval; deployers are the ones who can roll back.
    recipients = sorted({*approvers_emails(), *deployers_emails()})
    if not recipients:
        logger.warning("%s degraded but no approver or deployer has an e-mail", version)
        return 0
    message = (
        f"Scheduled validation run #{run_id} of {version} ({version.symbol}) failed:\n"
        f"{reason}\n\n"
        f"{version} is flagged degraded and its approval is suspended: it cannot be deployed "
        "to any target until it is approved again. It is still running where it was "
        "deployed; whether to roll back is your decision (admin: Deployments, Roll back).\n"
    )
    try:
        return send_mail(
            subject=f"[tradebot] {version} degraded: approval suspended",
            message=message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
            fail_silently=False,
        )
    except Exception:
        logger.exception("could not e-mail approvers about degraded %s", version)
        return 0


# --- scheduled runs ------------------------------------------------------------------------------


def _existing_slot_run(version: ModelVersion, slot: str) -> ValidationRun | None:
    return ValidationRun.objects.filter(model_version=version, scheduled_slot=slot).first()


def _create_slot_run(
    version: ModelVersion, slot: str, options: ValidationOptions, task_id: str
) -> tuple[ValidationRun, bool]:
    """Get or create the slot's run, claimed (running) by this call when it created it.

    The run is born queued like every run and claimed at once, in the same transaction:
    no row is ever inserted already running.
    """
    try:
        with transaction.atomic():
            run = ValidationRun.objects.create(
                model_version=version,
                kind=ValidationRun.KIND_SCHEDULED,
                strategy=options.strategy,
                scheduled_slot=slot,
                config=options.to_config(),
                task_id=task_id,
            )
            audit_event_record(
                event_type="scheduled_validation_started",
                obj=run,
                data={"version": version.pk, "slot": slot, "start": options.start,
                      "end": options.end},
            )  # fmt: skip
            claim = run_claim(run, task_id=task_id)
            if claim.job is None:
                raise RuntimeError(f"could not claim the run it just created: {claim.reason}")
            run = claim.job
    except IntegrityError:
        # Another delivery of the same slot won the race: its run is the slot's run.
        existing = _existing_slot_run(version, slot)
        if existing is None:
            raise
        return existing, False
    return run, True


def _is_own_redelivery(run: ValidationRun, task_id: str) -> bool:
    """The same task message delivered again after its worker died mid-run (acks_late)."""
    return bool(task_id) and run.status == RunStatus.RUNNING and run.task_id == task_id


def scheduled_validation(
    *,
    model_version: ModelVersion,
    slot: str,
    now: datetime | None = None,
    task_id: str = "",
    data_dir: Path | None = None,
    walk_forward: int = 1,
) -> ScheduledResult:
    """Run (or find) the scheduled validation of ``slot``; a skipped slot says why."""
    result = ScheduledResult(model_version.pk, slot)
    version = ModelVersion.objects.get(pk=model_version.pk)
    existing = _existing_slot_run(version, slot)
    if existing is not None and not _is_own_redelivery(existing, task_id):
        result.run = existing
        return result
    if version.state != ModelState.IN_PRODUCTION:
        result.skipped = f"{version} is {version.get_state_display().lower()}, not in production"
        logger.info("scheduled validation %s skipped: %s", slot, result.skipped)
        return result
    try:
        if walk_forward > 1:
            window = walk_forward_window(version, walk_forward, data_dir)
        else:
            window = scheduled_window(version, data_dir)
    except WindowUnavailable as exc:
        result.skipped = str(exc)
        logger.info("scheduled validation of %s, slot %s, skipped: %s", version, slot, exc)
        return result
    options = ValidationOptions(
        strategy=STRATEGY,
        start=window.start.isoformat(),
        end=window.stop.isoformat(),
        walk_forward=walk_forward,
    )
    if existing is not None:
        run, result.created = existing, False
    else:
        run, result.created = _create_slot_run(version, slot, options, task_id)
        if not result.created:
            result.run = run
            return result
    result.run = _execute(run, version, options, walk_forward > 1, data_dir)
    return result


def scheduled_validation_run(
    *, model_version: ModelVersion, slot: str, now: datetime | None = None
) -> ValidationRun | None:
    """The slot's run (created and executed once), or None when there were too few new bars."""
    return scheduled_validation(model_version=model_version, slot=slot, now=now).run


def _execute(
    run: ValidationRun,
    version: ModelVersion,
    options: ValidationOptions,
    is_report: bool,
    data_dir: Path | None,
) -> ValidationRun:
    computed = validation_backtest_for_run(run, options=options, data_dir=data_dir)
    if computed is None:
        return ValidationRun.objects.get(pk=run.pk)
    report_dir = validation_report_publish(computed.report_dir, computed, run)
    outcome = validation_outcome(computed, report_dir)
    drift_gates = gates_for(version.name, "drift")
    baseline = baseline_run(version)
    if is_report:
        outcome.drift = {"walk_forward": walk_forward_summary(outcome.metrics)}
    else:
        rules = drift_rules(outcome.metrics, baseline.metrics if baseline else None, drift_gates)
        live = live_comparison(version, data_dir)
        found = live_rule(live, drift_gates)
        outcome.gate_results = [*outcome.gate_results, *rules, *([found] if found else [])]
        outcome.drift = {
            "baseline_run": baseline.pk if baseline else None,
            "baseline": {k: (baseline.metrics or {}).get(k) for k in _DRIFT_METRICS}
            if baseline
            else None,
            "now": {k: outcome.metrics.get(k) for k in _DRIFT_METRICS},
            "rules": rules,
            "live": live,
        }
    outcome.drift = json_safe(outcome.drift)
    with transaction.atomic():
        recorded = validation_run_complete(run=run, outcome=outcome)
        if not is_report:
            _judge(version, recorded)
    return ValidationRun.objects.get(pk=recorded.pk)


_DRIFT_METRICS = ("sharpe", "win_rate", "max_drawdown", "total_return", "n_trades")


def _judge(version: ModelVersion, run: ValidationRun) -> None:
    """Move the window on and the health with the run's verdict (inside the record's txn)."""
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if run.window_end and (
        locked.last_scheduled_window_end is None
        or run.window_end > locked.last_scheduled_window_end
    ):
        locked.last_scheduled_window_end = run.window_end
        locked.save(update_fields=["last_scheduled_window_end"])
    # An exploratory run (a process whose settings disagree with the policy in force) cannot
    # certify health; a failure under the policy in force still flags the version (safe side).
    if run.status == RunStatus.PASSED and not run.exploratory:
        model_version_mark_passing(model_version=locked, validation_run=run)
    elif run.status == RunStatus.FAILED:
        failed = [g for g in run.gate_results if not g.get("passed")]
        reason = "; ".join(_failed_gate_text(g) for g in failed)
        model_version_flag_degraded(
            model_version=locked,
            validation_run=run,
            reason=f"scheduled run #{run.pk} ({run.scheduled_slot}) failed: {reason}",
        )


def revalidate_production(now: datetime | None = None) -> list[ScheduledResult]:
    """The daily run of every in-production version, slot = the UTC date; one failing
    version is logged and does not stop the others."""
    slot = daily_slot(now)
    results: list[ScheduledResult] = []
    for version in ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("pk"):
        try:
            results.append(scheduled_validation(model_version=version, slot=slot, now=now))
        except Exception as exc:
            logger.exception("scheduled validation of %s crashed", version)
            results.append(ScheduledResult(version.pk, slot, skipped=f"error: {exc}"))
    return results


# --- weekly walk-forward report ----------------------------------------------------------------


def walk_forward_window(
    version: ModelVersion, parts: int, data_dir: Path | None = None
) -> ScheduledWindow:
    """The version's whole out-of-sample history: from its first unseen bar to the last stored."""
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    step = interval_timedelta(version.interval)
    oos = version.out_of_sample_from or (version.metadata or {}).get("out_of_sample_from")
    if not oos:
        raise WindowUnavailable(f"{version} has no out_of_sample_from")
    stored = stored_candle_range(data_dir, version.symbol, version.interval)
    if stored is None:
        raise WindowUnavailable(f"no {version.symbol} {version.interval} candles in {data_dir}")
    start, stop = _utc(oos).ceil(step), stored[1] + step
    bars = max(0, int((stop - start) / step))
    if bars < 2 * parts:
        raise WindowUnavailable(
            f"{bars} out-of-sample bars: too few for a {parts}-part walk-forward report"
        )
    return ScheduledWindow(start, stop, bars)


def walk_forward_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """How stable the parts are: their Sharpe spread and how many made money."""
    parts = list(metrics.get("walk_forward") or [])
    sharpes = [
        s for s in (_number(p.get("metrics") or p, "sharpe") for p in parts) if s is not None
    ]
    returns = [
        r for r in (_number(p.get("metrics") or p, "total_return") for p in parts) if r is not None
    ]
    return {
        "parts": len(parts),
        "sharpe_mean": float(np.mean(sharpes)) if sharpes else None,
        "sharpe_std": float(np.std(sharpes)) if sharpes else None,
        "sharpe_min": min(sharpes) if sharpes else None,
        "profitable_parts": sum(1 for r in returns if r > 0),
    }


def walk_forward_report(
    *,
    model_version: ModelVersion,
    parts: int = WALK_FORWARD_PARTS,
    now: datetime | None = None,
    slot: str | None = None,
    task_id: str = "",
    data_dir: Path | None = None,
) -> ScheduledResult:
    """The weekly stability report: a K-part walk-forward over the whole out-of-sample history.

    Recorded as a scheduled ValidationRun with slot ``wf-<ISO year>-W<week>`` (metrics per
    part in ``metrics.walk_forward``, the stability summary in ``drift.walk_forward``) so it
    sits beside the daily runs in the admin. It is a report, not a verdict: its window
    overlaps bars already judged, so it moves neither the health nor the scheduled window.
    """
    return scheduled_validation(
        model_version=model_version,
        slot=slot or weekly_slot(now),
        now=now,
        task_id=task_id,
        data_dir=data_dir,
        walk_forward=max(2, parts),
    )


def walk_forward_reports(
    now: datetime | None = None, parts: int = WALK_FORWARD_PARTS
) -> list[ScheduledResult]:
    results = []
    for version in ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("pk"):
        try:
            results.append(walk_forward_report(model_version=version, parts=parts, now=now))
        except Exception as exc:
            logger.exception("walk-forward report of %s crashed", version)
            results.append(ScheduledResult(version.pk, weekly_slot(now), skipped=f"error: {exc}"))
    return results


def _failed_gate_text(gate: dict[str, Any]) -> str:
    """``max_sharpe_drop: 1.74 (limit 1.00)``: numbers as people read them, never 1.7433015115."""
    from models_registry.verdicts import threshold_text

    name = str(gate.get("name") or "?")
    value = gate.get("value")
    shown = threshold_text(name, value) if isinstance(value, int | float) else str(value)
    return f"{name}: {shown} (limit {threshold_text(name, gate.get('threshold'))})"
