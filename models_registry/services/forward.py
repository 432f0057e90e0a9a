"""One concern: forward paper runs, the engine paper trading live candles on a staging target.

A version that passed its replay pre-check and deployed to a staging target is ``staged``;
from then its engine there trades on the exchange's new candles with the paper broker, as
the production service would with real orders. ``forward_run_start`` opens the run in the
staging deployment's finishing transaction. Celery beat calls ``forward_runs_collect``
every minute: it reads each run's journal from the staging hosts through ``deployment/``
(the journal is the engine's own fsynced record, so a restarted engine or collector loses
and double-counts nothing: bars are counted by their candle time), records the progress,
and once the policy's period (``paper.min_bars`` bars) is covered judges the run by the
paper gates against a replay of the same candles at the same costs. A passing run marks
the version ``paper_tested``, the evidence approval needs.

A run whose host cannot reach market data, or whose journal cannot be read after
retries, goes ``needs_attention``: never a quiet pass. A run whose target now runs another
file (replaced), whose version was rejected, or that failed its gates, ends, and the
staging engine is stopped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from django.db import transaction
from django.utils import timezone

from deployment import runner as deploy_runner
from deployment.service import engine_stop
from deployment.steps import data_problem
from engine.backtest.report import json_safe
from engine.data import DataError, read_candles
from engine.data.binance_source import fetch_klines
from engine.data.fear_greed import download_fear_greed
from engine.data.intervals import interval_ms
from engine.features.kernels import required_history
from models_registry import dispatch
from models_registry.events import EventType
from models_registry.models import (
    Deployment,
    DeploymentTarget,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
)
from models_registry.policy import CostPolicy, policy_in_force, policy_reference
from models_registry.services import jobs, runs
from models_registry.services.audit import audit_event_record
from models_registry.services.deployments import target_spec
from models_registry.services.monitoring.live import (
    collect_journal,
    compare_live_with_backtest,
    session_costs_differences,
    version_records,
)
from models_registry.services.paper import paper_gates

logger = logging.getLogger(__name__)

# Journal reads that fail this many collections in a row make the run need attention.
READ_RETRIES = 3
# How long the staging engine may go without a candle, beyond its interval, before the
# run needs attention (the engine's own clock: deployment.steps.data_problem).
MARKET_DATA_GRACE_SECONDS = 120.0
LIVE = (RunStatus.RUNNING, RunStatus.NEEDS_ATTENTION)


# --------------------------------------------------------------------------- start


def forward_run_start(*, deployment: Deployment) -> PaperTradingRun:
    """Open the forward run of a staging deployment that just succeeded (its transaction).

    Earlier forward runs on the same target end: their engine has just been replaced."""
    version = deployment.model_version
    for earlier in _live_runs_on(deployment.target):
        runs.run_fail(
            run=earlier,
            error=f"replaced on {deployment.target.name} by deployment #{deployment.pk} "
            f"({version}) before its period ended",
        )
    in_force = policy_in_force(version.name)
    costs = CostPolicy.of(in_force)
    config = {
        "model_sha256": deployment.sha256,
        "target": deployment.target.name,
        "period_bars": int(in_force.content["gates"]["paper"]["min_bars"]),
        "fee_bps": costs.fee_bps,
        "slippage_bps": costs.slippage_bps,
        "policy_in_force": policy_reference(in_force),
        "read_failures": 0,
    }
    run = PaperTradingRun.objects.create(
        model_version=version,
        mode=PaperTradingRun.MODE_FORWARD,
        target=deployment.target,
        deployment=deployment,
        requested_by=deployment.requested_by,
        config=config,
        policy=in_force,
        policy_hash=in_force.content_hash,
    )
    audit_event_record(
        event_type=EventType.PAPER_RUN_REQUESTED,
        actor=deployment.requested_by,
        obj=run,
        data={"version": version.pk, "mode": run.mode, "deployment": deployment.pk, **config},
    )
    claim = jobs.job_claim(
        model=PaperTradingRun, pk=run.pk, task_id="", event_type=EventType.PAPER_RUN_STARTED
    )
    assert claim.job is not None, f"forward run {run.pk} could not start: {claim.reason}"
    return claim.job


def on_staging_deployed(sender: Any, *, deployment: Deployment, **_: Any) -> None:
    forward_run_start(deployment=deployment)


def _live_runs_on(target: DeploymentTarget) -> list[PaperTradingRun]:
    return list(
        PaperTradingRun.objects.select_for_update().filter(
            mode=PaperTradingRun.MODE_FORWARD, target=target, status__in=LIVE
        )
    )


# --------------------------------------------------------------------------- progress


@dataclass
class Progress:
    """What a forward run's journal says so far (the period's bars only)."""

    bars: list[pd.Timestamp] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    fills: int = 0
    unreadable: list[str] = field(default_factory=list)
    found: bool = False

    def summary(self, period_bars: int) -> dict[str, Any]:
        return {
            "bars": len(self.bars),
            "period_bars": period_bars,
            "days_done": round(len(self.bars) / 24, 2),
            "fills": self.fills,
            "first_bar": self.bars[0].isoformat() if self.bars else None,
            "last_bar": self.bars[-1].isoformat() if self.bars else None,
            "collected_at": timezone.now().isoformat(),
        }


def journal_progress(
    version: ModelVersion, journals: list[dict[str, Any]], period_bars: int
) -> Progress:
    """The run's bars: distinct candle times of this file's decisions, the period's first.

    Decisions are journaled only for bars the engine could trade (never for warm-up or
    catch-up history), so a restart neither adds nor repeats a bar."""
    progress = Progress()
    for journal in journals:
        if "error" in journal:
            progress.unreadable.append(f"{journal['host']}: {journal['error']}")
            continue
        records = version_records(version, journal["records"])
        if not records:
            continue
        progress.found = True
        seen: set[pd.Timestamp] = set()
        kept: list[dict[str, Any]] = []
        for record in records:
            candle = record.get("candle")
            if record.get("type") == "decision" and record.get("prediction") is not None:
                stamp = pd.Timestamp(candle)
                if stamp not in seen and len(seen) >= period_bars:
                    break  # the period is over: later bars are not this run's evidence
                seen.add(stamp)
            kept.append(record)
        progress.bars = sorted(seen)
        progress.records = kept
        progress.fills = sum(1 for r in kept if r.get("type") == "fill")
        break  # one engine per staging target: the first journal of this file is the run's
    return progress


# --------------------------------------------------------------------------- collect


def forward_runs_collect() -> list[int]:
    """Collect (and judge when due) every live forward run; beat calls this every minute."""
    done = []
    for run in PaperTradingRun.objects.filter(
        mode=PaperTradingRun.MODE_FORWARD, status__in=LIVE
    ).select_related("model_version", "target"):
        try:
            forward_run_collect(run)
        except Exception:  # one run's failure must not hide the others
            logger.exception("collecting %s failed", run)
            continue
        done.append(run.pk)
    return done


def forward_run_collect(run: PaperTradingRun) -> PaperTradingRun:
    """One collection: end it if its version or target moved on, else read, record, judge."""
    version, target = run.model_version, run.target
    assert target is not None, f"{run} has no target"
    ended = _ended_elsewhere(run, version)
    if ended:
        return _end(run, ended, stop_engine=version.state == ModelState.REJECTED)
    journals = collect_journal(target)  # SSH: outside any transaction
    period = int(run.config.get("period_bars") or 0)
    progress = journal_progress(version, journals, period)
    problem = _attention_reason(run, progress)
    evaluation = evaluate(run, progress) if progress.bars and problem is None else None
    _record_progress(run, progress, period, problem, evaluation)
    run.refresh_from_db()
    if problem is not None or run.status != RunStatus.RUNNING:
        return run
    if len(progress.bars) >= period > 0:
        return forward_run_judge(run, progress, evaluation)
    return run


@dataclass
class Evaluation:
    """The run's own figures and its replay comparison, or why they could not be made."""

    figures: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        if self.error:
            return {"evaluation_error": self.error}
        if not self.comparison.get("compared"):
            return {**self.figures, "replay_divergence": None,
                    "replay_not_compared": self.comparison.get("reason")}  # fmt: skip
        return {**self.figures, "replay_divergence": self.comparison.get("divergence")}


def evaluate(run: PaperTradingRun, progress: Progress) -> Evaluation:
    """Figures so far, against a replay of the exchange's same candles at the run's costs."""
    version = run.model_version
    costs = _run_costs(run)
    try:
        candles = exchange_candles(version, progress.bars[0], progress.bars[-1])
    except (DataError, OSError, ValueError) as exc:
        return Evaluation(error=f"the candles of the period could not be fetched: {exc}")
    if candles.empty or candles.index[-1] < progress.bars[-1]:
        return Evaluation(error="the exchange does not serve the period's candles yet")
    try:
        sentiment = exchange_sentiment(version)
    except (DataError, OSError, ValueError) as exc:
        return Evaluation(error=f"the Fear & Greed index could not be fetched: {exc}")
    comparison = compare_live_with_backtest(
        version, progress.records, candles, sentiment=sentiment, costs=costs
    )
    figures = forward_figures(progress, candles)
    return Evaluation(json_safe(figures), json_safe(_marked_at_the_end(comparison, figures)))


def _run_costs(run: PaperTradingRun) -> CostPolicy:
    """The policy's costs when the run started: what its engine was shipped to trade at."""
    return CostPolicy(
        fee_bps=float(run.config["fee_bps"]), slippage_bps=float(run.config["slippage_bps"])
    )


def _marked_at_the_end(comparison: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """The equity gap at the period's last close, not at the journal's last state record.

    A state record is written only when the holdings change, so its equity is the mark of
    that bar; the run's own curve (``forward_figures``) is marked at every close."""
    if not comparison.get("compared") or figures.get("final_equity") is None:
        return comparison
    expected = float(comparison["backtest_final_equity"])
    gap = abs(figures["final_equity"] - expected) / max(abs(expected), 1e-12)
    return {
        **comparison,
        "live_final_equity": figures["final_equity"],
        "final_equity_divergence": gap,
        "divergence": max(
            gap, comparison["max_price_divergence"], comparison["trade_mismatch_share"]
        ),
    }


def _ended_elsewhere(run: PaperTradingRun, version: ModelVersion) -> str | None:
    version.refresh_from_db()
    if version.state == ModelState.REJECTED:
        return f"{version} was rejected during its forward run"
    deployment = (
        Deployment.objects.filter(target=run.target, status="succeeded")
        .order_by("-finished_at", "-id")
        .first()
    )
    if deployment is not None and deployment.sha256 != run.config.get("model_sha256"):
        return (
            f"replaced on {run.target} by deployment #{deployment.pk} ({deployment.model_version})"
        )
    return None


def _attention_reason(run: PaperTradingRun, progress: Progress) -> str | None:
    """Why the run cannot go on quietly: an unreadable journal after retries, or no data."""
    failures = int(run.config.get("read_failures") or 0)
    if progress.unreadable and not progress.found:
        failures += 1
        run.config["read_failures"] = failures
        if failures >= READ_RETRIES:
            return "journal unreadable after {} tries: {}".format(
                failures, "; ".join(progress.unreadable)
            )
        return None
    run.config["read_failures"] = 0
    return _market_data_reason(run)


def _market_data_reason(run: PaperTradingRun) -> str | None:
    assert run.target is not None
    name = run.model_version.name
    try:
        reports = deploy_runner.read_status(target_spec(run.target), name=name)
    except Exception as exc:  # a broken target spec is the same attention: say it
        return f"host status unreadable: {exc}"
    for label, report in reports.items():
        state = report.state
        if state is None or not state.status.document:
            continue
        problem = data_problem(state.status, MARKET_DATA_GRACE_SECONDS)
        if problem is not None and "no candle" not in problem.text:
            return f"staging host {label} cannot reach market data: {problem.text}"
    return None


def _record_progress(
    run: PaperTradingRun,
    progress: Progress,
    period: int,
    problem: str | None,
    evaluation: Evaluation | None,
) -> None:
    """Write the figures so far (not a status) and move to or from needs_attention."""
    with transaction.atomic():
        locked = PaperTradingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status not in LIVE:
            return
        config = {**locked.config, "read_failures": run.config.get("read_failures", 0)}
        forward = progress.summary(period)
        if evaluation is not None:
            forward.update(evaluation.summary())
        if problem:
            forward["attention"] = problem
        metrics = {**(locked.metrics or {}), "forward": forward}
        figures = {"metrics": metrics, "config": config, "bars": len(progress.bars)}
        if problem and locked.status == RunStatus.RUNNING:
            jobs.job_transition(
                job=locked,
                to=RunStatus.NEEDS_ATTENTION,
                event_type=EventType.PAPER_RUN_NEEDS_ATTENTION,
                fields={**figures, "error": problem[:5000]},
                data={"reason": problem[:500], "target": run.config.get("target")},
            )
            return
        if not problem and locked.status == RunStatus.NEEDS_ATTENTION:
            jobs.job_transition(
                job=locked,
                to=RunStatus.RUNNING,
                event_type=EventType.PAPER_RUN_RESUMED,
                fields={**figures, "error": ""},
                data={"bars": len(progress.bars)},
            )
            return
        locked.metrics, locked.config, locked.bars = metrics, config, len(progress.bars)
        locked.trades = progress.fills
        locked.save(update_fields=["metrics", "config", "bars", "trades"])


# --------------------------------------------------------------------------- judge


def forward_run_judge(
    run: PaperTradingRun, progress: Progress, evaluation: Evaluation | None = None
) -> PaperTradingRun:
    """The period is covered: figures, the replay of the same candles, the paper gates."""
    evaluation = evaluation or evaluate(run, progress)
    if evaluation.error:
        return _record_unjudged(run, evaluation.error)
    comparison = evaluation.comparison
    divergence = comparison.get("divergence") if comparison.get("compared") else None
    gate_results = paper_gates(
        bars=len(progress.bars),
        metrics=evaluation.figures,
        divergence={"equity_relative": divergence},
        gates=dict(run.policy.content["gates"]["paper"]) if run.policy else {},
    )
    outcome = runs.RunOutcome(
        window_start=progress.bars[0].to_pydatetime(),
        window_end=progress.bars[-1].to_pydatetime(),
        metrics=json_safe(
            {**(run.metrics or {}), **evaluation.figures, "replay_comparison": comparison}
        ),
        gate_results=gate_results,
        passed=all(g["passed"] for g in gate_results),
        bars=len(progress.bars),
        trades=progress.fills,
        # equity_relative: the figure the paper gate and the verdicts read, as for a replay.
        divergence={**comparison, "equity_relative": divergence},
        policy_id=run.policy_id,
        policy_hash=run.policy_hash,
    )
    # An engine that traded at other costs than the run's (the policy's, shipped with the
    # model) is not evidence: recorded, exploratory, and it never moves the version.
    reasons = session_costs_differences(progress.records, _run_costs(run))
    outcome.exploratory, outcome.exploratory_reasons = bool(reasons), reasons
    finished = runs.paper_run_complete(run=run, outcome=outcome)
    if not finished.passed:
        _stop_staging_engine(finished, "its forward run failed the paper gates")
    return finished


def _record_unjudged(run: PaperTradingRun, reason: str) -> PaperTradingRun:
    with transaction.atomic():
        locked = PaperTradingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            return locked
        return jobs.job_transition(
            job=locked,
            to=RunStatus.NEEDS_ATTENTION,
            event_type=EventType.PAPER_RUN_NEEDS_ATTENTION,
            fields={"error": reason[:5000]},
            data={"reason": reason[:500]},
        )


def forward_figures(progress: Progress, candles: pd.DataFrame) -> dict[str, Any]:
    """Return, buy-and-hold over the same bars, and drawdown of the journal's own equity."""
    index = pd.DatetimeIndex(progress.bars)
    closes = candles["close"].reindex(index)
    opens = candles["open"].reindex(index)
    cash, quantity = _start_holdings(progress.records)
    start_equity = cash + quantity * float(opens.iloc[0])
    # A live order fills as its decision bar closes, i.e. at the next bar's open: one made
    # at the period's last close trades in the bar after it, as a replay of the period
    # would not, so it is not this period's.
    fills = [
        r
        for r in progress.records
        if r.get("type") == "fill" and pd.Timestamp(r["candle"]) < index[-1]
    ]
    equity = []
    for stamp, close in closes.items():
        for fill in (f for f in fills if pd.Timestamp(f["candle"]) == stamp):
            signed = float(fill["quantity"]) * (1 if str(fill["side"]).lower() == "buy" else -1)
            quantity += signed - float(fill.get("base_fee") or 0.0)
            cash -= signed * float(fill["price"]) + float(fill["fee"])
        equity.append(cash + quantity * float(close))
    curve = pd.Series(equity, index=index)
    drawdown = float((1 - curve / curve.cummax()).max()) if len(curve) else None
    return {
        "total_return": float(curve.iloc[-1] / start_equity - 1) if len(curve) else None,
        "buy_and_hold_return": float(closes.iloc[-1] / opens.iloc[0] - 1),
        "max_drawdown": drawdown,
        "final_equity": float(curve.iloc[-1]) if len(curve) else None,
        "start_equity": start_equity,
        "fills": len(fills),
    }


def _start_holdings(records: list[dict[str, Any]]) -> tuple[float, float]:
    """Cash and position just before the period's first decision (the last state before)."""
    first = next((i for i, r in enumerate(records) if r.get("type") == "decision"), len(records))
    states = [r for r in records[:first] if r.get("type") == "state"]
    if states:
        return float(states[-1]["cash"]), float(states[-1]["quantity"])
    later = next((r for r in records if r.get("type") == "state"), None)
    return (float(later["cash"]) if later else 10_000.0), 0.0


def exchange_candles(
    version: ModelVersion, first: pd.Timestamp, last: pd.Timestamp
) -> pd.DataFrame:
    """The exchange's candles of the period plus the model's warm-up, fetched fresh.

    The same exchange the staging engine traded on (``TRADEBOT_BINANCE_API_URL``), in a
    scratch store: the replay is of the bars the engine saw, never of our own copy."""
    step = pd.Timedelta(milliseconds=interval_ms(version.interval))
    history = required_history(version.metadata or {})
    scratch = Path(tempfile.mkdtemp(prefix="forward-candles-"))
    try:
        fetch_klines(
            scratch,
            version.symbol,
            version.interval,
            since=first - step * (history + 1),
            until=last + step,
        )
        return read_candles(scratch, version.symbol, version.interval).frame
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def exchange_sentiment(version: ModelVersion) -> pd.Series | None:
    """The Fear & Greed index from the API the staging engine reads
    (``TRADEBOT_FNG_API_URL``), for a model that uses it; None otherwise."""
    if not (version.metadata or {}).get("uses_sentiment"):
        return None
    return download_fear_greed()


# --------------------------------------------------------------------------- end and stop


def _end(run: PaperTradingRun, reason: str, *, stop_engine: bool) -> PaperTradingRun:
    runs.run_fail(run=run, error=reason)
    ended = PaperTradingRun.objects.get(pk=run.pk)
    if stop_engine:
        _stop_staging_engine(ended, reason)
    return ended


def _stop_staging_engine(run: PaperTradingRun, reason: str) -> None:
    """Ask a worker to stop the engine on the run's staging hosts (SSH off this thread)."""
    dispatch.task_send(dispatch.STOP_STAGING_ENGINE, args=(run.pk, reason))


def staging_engine_stop(run_id: int, reason: str) -> dict[str, Any]:
    """Stop the engine of a forward run's target on every host; one audit event."""
    run = PaperTradingRun.objects.select_related("target", "model_version").get(pk=run_id)
    assert run.target is not None
    # Its paper journal is set aside too: the next staged version starts flat.
    results = engine_stop(target_spec(run.target), archive_journals=True)
    hosts = {r.host: r.as_dict() for r in results}
    audit_event_record(
        event_type=EventType.STAGING_ENGINE_STOPPED,
        actor=None,
        obj=run,
        data={"target": run.target.name, "reason": reason[:500], "hosts": hosts},
    )
    return hosts
