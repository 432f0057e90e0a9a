"""The demo's lifecycle after the data import (see models_registry/demo.py).

Two versions walk the whole way, each step by the demo user whose role it is:
the engineer trains, validates, replays and stages, where the engine paper trades
forward on the local fake exchange until the policy's period is judged; the approver
approves;
the deployer deploys to the local production target. The second version
replaces the first in production; then the deployer rolls back to the first.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import CommandError, call_command

from models_registry.demo_data import DEMO_DATA
from models_registry.demo_exchange import SPEED, demo_exchange
from models_registry.models import Environment, ModelState, ModelVersion
from models_registry.services import lifecycle
from models_registry.services.local_targets import local_target_ensure

# The policy judges a version on 3 re-fitted folds of 290 days that end where its 90-day
# window after TRAIN_END ends; the first fold's model still gets the six months of history
# training asks for. Everything after TRAIN_END stays out-of-sample for the version itself.
TRAIN_END = "2024-12-24"
REPLAY_FROM = "2025-03-24"  # the validation window's end: the replay pre-check's 14 days
# The fake exchange's clock starts here for the forward paper run on staging: bars after
# the validation window and the replay pre-check, never shown to the model before.
FORWARD_FROM = "2025-04-07T00:00:00Z"
FORWARD_PATIENCE_SECONDS = 600.0
# TRADEBOT_DEMO_EPOCHS: fewer epochs for a quick look or a test; the walk is the same.
EPOCHS = os.environ.get("TRADEBOT_DEMO_EPOCHS", "8")
Say = Callable[[str], None]


def _command(name: str, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command(name, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def demo_policy_set(
    *, users: dict[str, Any], say: Say, dotted: dict[str, Any], label: str, comment: str
) -> None:
    """A policy change the way the team makes one: the admin proposes, the approver confirms.

    The demo never sets the environment: its looser gates are a named, audited, hashed policy
    that every decision page lists in red against the shipped defaults.
    """
    from models_registry.policy import content_with, loosenings, policy_in_force, policy_name
    from models_registry.services.policies import (
        validation_policy_confirm,
        validation_policy_propose,
    )
    from models_registry.verdicts import loosening_words

    content = content_with(policy_in_force("").content, dotted)
    proposal = validation_policy_propose(
        scope="", content=content, proposed_by=users["admin"], label=label, comment=comment
    )
    policy = validation_policy_confirm(policy=proposal, confirmed_by=users["approver"])
    say(f"  policy {policy_name(policy)}: proposed by admin, confirmed by approver")
    for item in loosenings(policy.content):
        say(f"  LOOSER than the shipped defaults: {loosening_words(item)}")


def _collect_forward_run(version: ModelVersion, say: Say) -> Any:
    """What beat's collection does every minute, here every two seconds until it is judged."""
    from models_registry.models import PaperTradingRun, RunStatus
    from models_registry.services.forward import forward_runs_collect

    run = version.paper_runs.filter(mode=PaperTradingRun.MODE_FORWARD).latest("created_at")
    deadline = time.monotonic() + FORWARD_PATIENCE_SECONDS
    reported = -1
    while run.status == RunStatus.RUNNING and time.monotonic() < deadline:
        forward_runs_collect()
        run.refresh_from_db()
        if run.bars // 48 != reported // 48:
            reported = run.bars
            say(f"  forward run #{run.pk}: {run.bars} of {run.config.get('period_bars')} bars")
        time.sleep(2.0)
    return run


def _stop_staging_engine(staging: Any) -> None:
    """The fake exchange goes away with the demo's walk: so does the engine trading it."""
    from deployment.service import engine_stop
    from models_registry.services.deployments import target_spec

    engine_stop(target_spec(staging))


def demo_targets(exchange: tuple[str, str] | None = None) -> tuple[Any, Any]:
    hosts = Path(settings.VAR_DIR) / "demo-hosts"
    for host in ("staging", "production"):
        # Provisioned hosts: the install root and its model folder exist before a first deploy.
        (hosts / host / "src" / "ml").mkdir(parents=True, exist_ok=True)
    staging = local_target_ensure(
        name="demo-staging",
        environment=Environment.STAGING,
        install_root=hosts / "staging",
        replay_from=REPLAY_FROM,
        exchange=exchange,
    )
    production = local_target_ensure(
        name="demo-production",
        environment=Environment.PRODUCTION,
        install_root=hosts / "production",
        replay_from=REPLAY_FROM,
    )
    return staging, production


class DemoStepFailed(RuntimeError):
    """A lifecycle step did not move the version on; the message says what the record shows."""


def walk_version(*, users: dict[str, Any], say: Say, seed: str, epochs: str) -> ModelVersion:
    engineer, approver, deployer = users["engineer"], users["approver"], users["deployer"]
    say(f"engineer trains a BTCUSDT sentiment model on data up to {TRAIN_END} (TensorFlow -> ONNX)")
    args = ["BTCUSDT", "--end", TRAIN_END, "--epochs", epochs, "--seed", seed, "--user", "engineer"]
    trained = _command("train_model", *args)
    version = ModelVersion.objects.get(pk=trained["model_version_id"])
    say(f"  {version}: sha256 {version.onnx_sha256[:12]}, test directional accuracy "
        f"{version.metrics.get('test_directional_accuracy', '?')}")  # fmt: skip

    say(f"engineer validates {version} under the policy: {_evidence_in_force(version)}, each "
        "fold's model trained with its configuration on the bars before the fold")  # fmt: skip
    validation = _command(
        "run_backtest", "ml_basic", "--model", version.name,
        "--model-version", str(version.version), "--user", engineer.username,
    )  # fmt: skip
    say_against_default_gates(validation, say)
    if validation.get("reproduction"):
        say(f"  reproduction: {validation['reproduction']}")
    _expect(version, ModelState.VALIDATED, say)

    say(f"engineer replays {version} on the bars after its validation window (a pre-check)")
    replay = _command("paper_trade_version", version.name, "--version", str(version.version),
                      "--days", "14", "--user", engineer.username)  # fmt: skip
    say(f"  replay: {_trades(replay)} trade(s), passed: {replay.get('passed')}")
    _expect(version, ModelState.VALIDATED, say)

    with demo_exchange(
        candles_csv=DEMO_DATA / "BTCUSDT-1h.csv.gz",
        sentiment_csv=DEMO_DATA / "fear_greed_index.csv.gz",
        origin=FORWARD_FROM,
    ) as exchange:
        staging, production = demo_targets((exchange.binance_url, exchange.fng_url))
        say(f"engineer stages {version} on {staging.name}: start-up checks, then its engine "
            f"paper trades forward on the local fake exchange from {FORWARD_FROM} "
            f"({SPEED:g}x clock)")  # fmt: skip
        _command("deploy_model", version.name, "--version", str(version.version),
                 "--target", staging.name, "--user", engineer.username, "--inline")  # fmt: skip
        _expect(version, ModelState.STAGED, say)
        run = _collect_forward_run(version, say)
        say(f"  {run}: {run.bars} bars, {run.trades} fills; gates "
            f"{'passed' if run.passed else 'FAILED'}")  # fmt: skip
        _expect(version, ModelState.PAPER_TESTED, say)
        _stop_staging_engine(staging)

    say(f"approver approves {version} (four eyes: not the engineer who trained and staged it)")
    lifecycle.model_version_approve(
        model_version=version,
        approved_by=approver,
        comment="Demo: validation, replay and the forward paper run on staging reviewed.",
    )
    say(f"deployer deploys {version} to {production.name}: upload, verify, swap, restart, check")
    _command("deploy_model", version.name, "--version", str(version.version),
             "--target", production.name, "--user", deployer.username, "--inline")  # fmt: skip
    return _expect(version, ModelState.IN_PRODUCTION, say)


def _evidence_in_force(version: ModelVersion) -> str:
    from models_registry.policy import evidence_words, policy_in_force

    return evidence_words(policy_in_force(version.name).content)


def _trades(summary: dict[str, Any]) -> Any:
    metrics = summary.get("metrics") or {}
    return metrics.get("n_trades", summary.get("n_trades", "?"))


def default_gate_failures(metrics: dict[str, Any]) -> list[str]:
    """The default validation gates (models_registry.gates.DEFAULT_GATES) this result fails.

    Evaluated through the backtest's own gate evaluation over whatever keys the defaults
    hold, so it follows the gates as they change.
    """
    from engine.backtest.gates import evaluate_gates
    from models_registry.gates import DEFAULT_GATES

    results = evaluate_gates(metrics, DEFAULT_GATES["validation"])
    return [f"{r.name} ({r.detail})" for r in results if not r.passed and r.name != "out_of_sample"]


def say_against_default_gates(summary: dict[str, Any], say: Say) -> None:
    """The demo's result beside the defaults it loosened: never hide what they would say."""
    metrics = summary.get("metrics") or {}
    demo_failed = summary.get("failed_gates") or []
    say(
        f"  validation: {_trades(summary)} trade(s), total return "
        f"{metrics.get('total_return', float('nan')):+.2%} after costs (buy-and-hold "
        f"{(metrics.get('buy_and_hold') or {}).get('total_return', float('nan')):+.2%}); "
        f"demo gates: {'failed ' + ', '.join(demo_failed) if demo_failed else 'passed'}"
    )
    try:
        refused = default_gate_failures(metrics)
    except (KeyError, TypeError, ValueError) as exc:  # gates changed shape: say, do not hide
        say(f"  default gates: could not be evaluated here ({exc})")
        return
    if refused:
        say(f"  default gates would REFUSE this version: {'; '.join(refused)}")
    else:
        say("  default gates: passed")


def _report_state(version: ModelVersion, say: Say) -> ModelVersion:
    version.refresh_from_db()
    say(f"  {version} is now {version.get_state_display().lower()}")
    return version


def _expect(version: ModelVersion, state: str, say: Say) -> ModelVersion:
    _report_state(version, say)
    if version.state == state:
        return version
    run = (
        version.validation_runs.first() if state == ModelState.VALIDATED
        else version.paper_runs.first() if state in (ModelState.PAPER_TESTED,
                                                     ModelState.STAGED)
        else version.deployments.order_by("-id").first()
    )  # fmt: skip
    detail = getattr(run, "error", "") or getattr(run, "gate_results", "") or "see the admin"
    raise DemoStepFailed(f"{version} did not become {state}: {detail}")


def step_first_version(*, users: dict[str, Any], say: Say, version: Any) -> ModelVersion:
    return walk_version(users=users, say=say, seed="42", epochs=EPOCHS)


def step_second_version(*, users: dict[str, Any], say: Say, version: Any) -> ModelVersion:
    second = walk_version(users=users, say=say, seed="7", epochs=EPOCHS)
    if version is not None:
        version.refresh_from_db()
        say(f"  {version} is now {version.get_state_display().lower()} (replaced)")
    return second


def step_rollback(*, users: dict[str, Any], say: Say, version: ModelVersion) -> ModelVersion:
    _staging, production = demo_targets()
    say(f"deployer rolls {production.name} back to the version that ran before {version}")
    deployer = users["deployer"].username
    result = _command(
        "rollback_model", "--target", production.name, "--user", deployer,
        "--comment", "Demo: roll back", "--inline",
    )  # fmt: skip
    restored = ModelVersion.objects.get(name=result["model"], version=result["version"])
    _report_state(version, say)
    return _report_state(restored, say)


def step_monitoring(*, users: dict[str, Any], say: Say, version: ModelVersion) -> ModelVersion:
    from models_registry.demo_data import DEMO_DATA, HELD_BACK_FROM, import_candles

    say(f"Celery beat's daily re-validation of {version} on the bars since its validation")
    _scheduled_validation(version, "demo-day-1", say)
    say(f"new candles arrive (the hourly refresh): the shipped history from {HELD_BACK_FROM}")
    import_candles(DEMO_DATA / "BTCUSDT-1h.csv.gz")
    say("an operator tightens the drift rule (Sharpe may not drop at all) and beat fires again")
    demo_policy_set(
        users=users,
        say=say,
        dotted={"gates.drift.max_sharpe_drop": -1000.0},
        label="demo-strict-drift",
        comment="Demo: Sharpe may not drop at all",
    )
    _scheduled_validation(version, "demo-day-2", say)
    version.refresh_from_db()
    say(f"  {version} health: {version.get_health_display().lower()}; state stays "
        f"{version.get_state_display().lower()}; its approval is suspended")  # fmt: skip
    _staging, production = demo_targets()
    deployer = users["deployer"].username
    try:
        _command(
            "deploy_model", version.name, "--version", str(version.version),
            "--target", production.name, "--user", deployer, "--inline",
        )  # fmt: skip
    except CommandError as exc:
        say(f"  redeploying it is refused: {exc}")
    else:
        raise DemoStepFailed(f"{version} was deployed again despite its suspended approval")
    return version


def _scheduled_validation(version: ModelVersion, slot: str, say: Say) -> None:
    result = _command(
        "run_scheduled_validation", version.name, "--model-version", str(version.version),
        "--slot", slot,
    )  # fmt: skip
    say(f"  slot {slot}: {json.dumps(result)[:400]}")


def step_verify_audit(*, users: dict[str, Any], say: Say, version: ModelVersion) -> ModelVersion:
    report = _command("verify_audit_log")
    say(f"audit chain verified: {json.dumps(report)}")
    return version


STEPS: list[Callable[..., ModelVersion | None]] = [
    step_first_version,
    step_second_version,
    step_rollback,
    step_monitoring,
    step_verify_audit,
]
