"""paper_trade_version NAME --version N [--days D]: the replay pre-check of a validated version.

Replays the held-out bars after its validation window through the engine, right here (not
queued), recording the same run (mode ``replay``) the ``run_paper_trading`` task records,
and says whether it is ready for staging. A replay is never paper trading: the version is
``paper_tested`` only by its forward run on a staging target (services/forward.py). For the
demo and for operators; the admin queues the task instead.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.management.commands._users import user_named
from models_registry.models import ModelState, ModelVersion, PaperTradingRun, RegistryError
from models_registry.services.paper import (
    DEFAULT_DAYS,
    DEFAULT_INITIAL_CASH,
    PaperOptions,
    PaperRefused,
    paper_execute,
    paper_run_create_inline,
)

SHOWN_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "fees_paid")


class Command(BaseCommand):
    help = (
        "Replay a validated registry version on the bars after its training data and its "
        "validation window (a pre-check before staging), compare with a backtest over the "
        "same bars, and record the replay; staging needs a passing one."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version is the model version; Django's own --version (its release) gives way.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="registry model name, e.g. btcusdt_sentiment")
        parser.add_argument(
            "--version", type=int, required=True, dest="model_version", help="version number"
        )
        parser.add_argument(
            "--days",
            type=float,
            default=DEFAULT_DAYS,
            help=f"period length (default {DEFAULT_DAYS})",
        )
        parser.add_argument(
            "--fee-bps",
            type=float,
            default=None,
            help="default: the policy's; lower makes the run exploratory (it moves nothing)",
        )
        parser.add_argument(
            "--slippage-bps",
            type=float,
            default=None,
            help="default: the policy's; lower makes the run exploratory (it moves nothing)",
        )
        parser.add_argument("--initial-cash", type=float, default=DEFAULT_INITIAL_CASH)
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")
        parser.add_argument("--user", default=None, help="username recorded as who ran it")

    def handle(self, *args: Any, **options: Any) -> None:
        version = _version(options["name"], options["model_version"])
        user = user_named(options["user"])
        try:
            paper_options = PaperOptions(
                days=options["days"],
                fee_bps=options["fee_bps"],
                slippage_bps=options["slippage_bps"],
                initial_cash=options["initial_cash"],
            )
            run = paper_run_create_inline(
                model_version=version, requested_by=user, options=paper_options
            )
        except (PaperRefused, RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        summary = summary_of_run(paper_execute(run))
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str))
        else:
            self.stdout.write(text_report(summary))
        if summary["status"] == "error":
            raise CommandError(f"replay {run.pk} could not run: {summary['error']}")


def _version(name: str, number: int) -> ModelVersion:
    version = ModelVersion.objects.filter(name=name, version=number).first()
    if version is None:
        known = list(
            ModelVersion.objects.filter(name=name)
            .order_by("version")
            .values_list("version", flat=True)
        )
        hint = f"; its versions: {known}" if known else "; no model of that name is registered"
        raise CommandError(f"no version {number} of model {name!r}{hint}")
    return version


def summary_of_run(run: PaperTradingRun) -> dict[str, Any]:
    version = run.model_version
    version.refresh_from_db()
    return {
        "run_id": run.pk,
        "model": f"{version.name} v{version.version}",
        "status": run.status,
        "passed": run.passed,
        "error": run.error,
        "version_state": version.state,
        # A passing replay at the policy's costs is what staging asks for; it moves nothing.
        "ready_for_staging": bool(
            run.passed and not run.exploratory and version.state == ModelState.VALIDATED
        ),
        "period_start": run.period_start.isoformat() if run.period_start else None,
        "period_end": run.period_end.isoformat() if run.period_end else None,
        "bars": run.bars,
        "trades": run.trades,
        "metrics": run.metrics,
        "divergence": run.divergence,
        "gates": run.gate_results,
        "exploratory": run.exploratory,
        "exploratory_reasons": run.exploratory_reasons,
        "policy_hash": run.policy_hash,
        "failed_gates": [g["name"] for g in run.gate_results if not g.get("passed")],
        "report_dir": run.report_dir,
        "plot_file": run.plot_file,
    }


def text_report(summary: dict[str, Any]) -> str:
    head = f"replay {summary['run_id']} of {summary['model']}"
    if summary["status"] == "error":
        return (
            f"{head} could not run: {summary['error']}; "
            f"the version stays {summary['version_state']}"
        )
    moved = (
        "ready for staging, where it paper trades forward"
        if summary["ready_for_staging"]
        else f"the version stays {summary['version_state']}"
    )
    divergence = summary["divergence"]
    lines = [
        f"{head}: gates {'PASSED' if summary['passed'] else 'FAILED'}; {moved}",
        *(
            [
                "  EXPLORATORY run (it can never move a version): "
                + "; ".join(summary.get("exploratory_reasons") or [])
            ]
            if summary.get("exploratory")
            else []
        ),
        f"  period: {summary['period_start']} to {summary['period_end']} ({summary['bars']} bars)",
        f"  trades: paper {divergence.get('paper_trades')}, backtest "
        f"{divergence.get('backtest_trades')}, mismatched {divergence.get('mismatched_trades')}",
        f"  final equity: paper {divergence.get('paper_final_equity')}, backtest "
        f"{divergence.get('backtest_final_equity')} (relative difference "
        f"{divergence.get('equity_relative')})",
    ]
    lines.extend(f"  {name}: {summary['metrics'].get(name)}" for name in SHOWN_METRICS)
    for gate in summary["gates"]:
        verdict = "pass" if gate["passed"] else "FAIL"
        lines.append(
            f"  gate {gate['name']:<16}{verdict:<6}"
            f"value {gate['value']} threshold {gate['threshold']}"
        )
    if summary["report_dir"]:
        lines.append(f"  report: MEDIA_ROOT/{summary['report_dir']}/{summary['plot_file']}")
    return "\n".join(lines)
