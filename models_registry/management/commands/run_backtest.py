"""One concern: the run_backtest command: a backtest of a model on bars it never saw.

run_backtest ml_basic --days 90 [--no-db]: backtest a model on bars it never saw.

With ``--no-db`` it only prints the report and writes the chart, trades and metrics
files. Without it, it records a ValidationRun for a registry version, executed right
here (not queued), and a passing run moves the version to ``validated``. A refused
input (no data, a broken model, an unknown strategy, a negative fee) records nothing.

Without ``--model``/``--model-version`` the model is the version in production (never the
newest). The report always names the model and version used. Exit status: 1 for a refused
input, 2 when a recorded run fails its gates (or could not run), and with ``--no-db`` 2 only
if ``--fail-on-gates`` is given; 0 otherwise.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.backtest.report import json_safe
from engine.dates import iso_date_argument
from engine.progress import stage_reporter
from engine.strategies import STRATEGIES
from models_registry.gates import gates_for
from models_registry.management.commands._users import user_named
from models_registry.models import (
    ModelState,
    ModelTrial,
    ModelVersion,
    RegistryError,
    ValidationRun,
)
from models_registry.services.trials import trial_record_for_look
from models_registry.services.validation import (
    DEFAULT_DAYS,
    DEFAULT_MAX_FILL,
    ModelSource,
    Progress,
    ValidationBacktest,
    ValidationOptions,
    ValidationRefused,
    validation_backtest,
    validation_run_inline,
)
from models_registry.services.walk_forward import (
    refit_applies_to,
    walk_forward_validation_inline,
)

# Metrics shown side by side with buy-and-hold in the text report.
REPORT_METRICS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_days",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "exposure",
    "fees_paid",
)


class Command(BaseCommand):
    help = (
        "Backtest a strategy (ml_basic with a model, or buy_and_hold) on stored candles, on "
        "bars after the model's training data. Without --no-db, record a validation run for "
        "a registry version; a passing run validates the version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("strategy", help="ml_basic or buy_and_hold")
        window = parser.add_argument_group("window and data")
        window.add_argument(
            "--days",
            type=float,
            default=None,
            help=(
                f"window length from the model's first unseen bar (default: the policy's, "
                f"{DEFAULT_DAYS}); another length makes the run exploratory"
            ),
        )
        window.add_argument(
            "--start",
            type=iso_date_argument,
            help="UTC window start; a window other than the policy's makes the run exploratory",
        )
        window.add_argument("--end", type=iso_date_argument, help="UTC window end, exclusive")
        window.add_argument("--symbol", default=None, help="default: the model's, else BTCUSDT")
        window.add_argument("--interval", default=None, help="default: the model's, else 1h")
        window.add_argument("--data-dir", type=Path, default=None, help="default: the data store")
        window.add_argument(
            "--max-fill",
            type=int,
            default=DEFAULT_MAX_FILL,
            help=f"fill gaps of at most this many bars forward (default {DEFAULT_MAX_FILL})",
        )
        window.add_argument(
            "--allow-in-sample",
            action="store_true",
            help="allow a window the model saw in training: marked in_sample, never passes",
        )
        model = parser.add_argument_group(
            "model (default: the version in production; the report always names the one used)"
        )
        model.add_argument(
            "--model",
            default=None,
            help="registry name, e.g. btcusdt_sentiment (its newest version unless "
            "--model-version); without it, the version in production",
        )
        model.add_argument(
            "--model-version",
            type=int,
            default=None,
            help="version number of --model (default name: <symbol>_sentiment)",
        )
        model.add_argument(
            "--model-path", type=Path, default=None, help="a folder of artifacts (--no-db only)"
        )
        costs = parser.add_argument_group("costs and reporting")
        costs.add_argument(
            "--fee-bps",
            type=float,
            default=None,
            help="default: the policy in force's; lower makes the run exploratory",
        )
        costs.add_argument(
            "--slippage-bps",
            type=float,
            default=None,
            help="default: the policy in force's; lower makes the run exploratory",
        )
        costs.add_argument(
            "--walk-forward", type=int, default=1, help="also report K consecutive parts"
        )
        costs.add_argument(
            "--no-db",
            action="store_true",
            help="report only, no validation run; a look at a model's policy window is still "
            "counted as a trial",
        )
        costs.add_argument("--json", action="store_true", help="print a JSON summary only")
        costs.add_argument(
            "--output-dir", type=Path, default=None, help="--no-db: where the files go"
        )
        costs.add_argument("--user", default=None, help="username recorded as who ran it")
        costs.add_argument(
            "--fail-on-gates",
            action="store_true",
            help="with --no-db, also exit 2 when a gate fails (a recorded run always does)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.model_used = "?"
        try:
            run_options = ValidationOptions(
                strategy=options["strategy"],
                days=options["days"],
                start=options["start"],
                end=options["end"],
                fee_bps=options["fee_bps"],
                slippage_bps=options["slippage_bps"],
                walk_forward=options["walk_forward"],
                allow_in_sample=options["allow_in_sample"],
                max_fill=options["max_fill"],
            )
            run_options.check()
            if options["no_db"]:
                summary = self._report_only(run_options, options)
            else:
                summary = self._record(run_options, options)
        except (ValidationRefused, RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str))
        else:
            self.stdout.write(text_report(summary))
        # A script (or CI) must not mistake a failed validation for a passed one: the report
        # is printed first, then the exit status says it. --no-db is a report, so only on ask.
        if not summary["passed"] and (summary["recorded"] or options["fail_on_gates"]):
            raise CommandError(gates_failed_line(summary), returncode=GATES_FAILED_EXIT)

    # --- --no-db ---------------------------------------------------------------------------

    def _report_only(self, run_options: ValidationOptions, options: dict[str, Any]) -> dict:
        source = self._source_for_report(run_options, options)
        output_dir = options["output_dir"] or default_output_dir(run_options.strategy)
        with stage_progress(self.stderr, disabled=options["json"]) as progress:
            computed = validation_backtest(
                source=source,
                options=run_options,
                gates=_gates(source),
                output_dir=output_dir,
                data_dir=options["data_dir"],
                progress=progress,
            )
        look = look_record(source, computed, user_named(options["user"]))
        return {
            **summary_of(computed, run=None),
            "model_used": self.model_used,
            "counted_as_trial": look is not None,
        }

    def _source_for_report(
        self, run_options: ValidationOptions, options: dict[str, Any]
    ) -> ModelSource:
        path: Path | None = options["model_path"]
        if path is not None:
            if options["model"] or options["model_version"]:
                raise CommandError("--model-path cannot be combined with --model/--model-version")
            source = _source_from_folder(path, options)
            self.model_used = folder_model_name(path, source)
            return source
        needs_model = STRATEGIES[run_options.strategy].needs_model
        if not needs_model and not (options["model"] or options["model_version"]):
            self.model_used = f"none ({run_options.strategy} uses no model)"
            return ModelSource(
                None,
                None,
                (options["symbol"] or "BTCUSDT").upper(),
                options["interval"] or settings.TRADEBOT_INTERVAL,
            )
        version = self._version(options)
        self.model_used = registry_model_name(version)
        return _checked_source(ModelSource.for_version(version), options)

    # --- recorded run ----------------------------------------------------------------------

    def _record(self, run_options: ValidationOptions, options: dict[str, Any]) -> dict:
        if options["model_path"] is not None:
            raise CommandError(
                "--model-path needs --no-db: a recorded validation run belongs to a registry "
                "version (register the model first, then pass --model / --model-version)"
            )
        if options["output_dir"] is not None:
            raise CommandError(
                "--output-dir is for --no-db: a recorded run's files go under "
                "MEDIA_ROOT/validation/<run id>/"
            )
        if options["data_dir"] is not None:
            raise CommandError(
                "--data-dir is for --no-db: a recorded run reads the configured data store"
            )
        run_options.check_recordable()
        version = self._version(options)
        _checked_source(ModelSource.for_version(version), options)
        user = user_named(options["user"])
        # Under a policy that judges on re-fitted folds, a policy run trains and trades each
        # fold here, one after another; the admin, the API and beat fan them out to workers.
        validate = (
            walk_forward_validation_inline
            if refit_applies_to(version, run_options)
            else validation_run_inline
        )
        with stage_progress(self.stderr, disabled=options["json"]) as progress:
            run = validate(
                model_version=version, requested_by=user, options=run_options, progress=progress
            )
        return summary_of_run(run)

    def _version(self, options: dict[str, Any]) -> ModelVersion:
        if options["model"] is None and options["model_version"] is None:
            return version_in_production(options["symbol"])
        symbol = (options["symbol"] or "BTCUSDT").upper()
        name = options["model"] or f"{symbol.lower()}_sentiment"
        versions = ModelVersion.objects.filter(name=name)
        if options["model_version"] is not None:
            version = versions.filter(version=options["model_version"]).first()
            if version is None:
                raise CommandError(f"no version {options['model_version']} of model {name!r}")
            return version
        version = versions.order_by("-version").first()
        if version is None:
            raise CommandError(
                f"no model named {name!r} in the registry: train or register one, or pass "
                "--model-path DIR with --no-db"
            )
        return version


GATES_FAILED_EXIT = 2  # a refused input exits 1 (CommandError's default)


def version_in_production(symbol: str | None) -> ModelVersion:
    """The version trading now (of `symbol`, if given): the one a plain re-run should judge.

    Never the newest: a fresh, unreviewed training would silently replace what is live.
    """
    live = ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("name")
    if symbol:
        live = live.filter(symbol__iexact=symbol)
    found = list(live[:2])
    where = f" for {symbol.upper()}" if symbol else ""
    if not found:
        raise CommandError(
            f"no model version is in production{where}: pass --model NAME "
            "(and --model-version N) to choose one"
        )
    if len(found) > 1:
        raise CommandError(
            f"more than one model is in production{where} ({found[0]}, {found[1]}): pass "
            "--model NAME to choose one"
        )
    return found[0]


def registry_model_name(version: ModelVersion) -> str:
    return f"{version.name} v{version.version} ({version.state})"


def folder_model_name(path: Path, source: ModelSource) -> str:
    metadata = source.metadata or {}
    return (
        f"{metadata.get('name', '?')} v{metadata.get('version', '?')} from folder {path} "
        "(not a registry version)"
    )


def gates_failed_line(summary: dict[str, Any]) -> str:
    failed = ", ".join(g["name"] for g in summary["gates"] if not g.get("passed")) or "none"
    model = summary.get("model_used") or "no model"
    if summary.get("recorded") and summary.get("status") == "error":
        return f"validation run {summary['run_id']} of {model} could not run"
    return f"validation of {model} failed its gates: {failed}"


def _gates(source: ModelSource) -> dict[str, Any]:
    name = (source.metadata or {}).get("name") or f"{source.symbol.lower()}_sentiment"
    return gates_for(str(name), "validation")


def _source_from_folder(path: Path, options: dict[str, Any]) -> ModelSource:
    from engine.backtest import BacktestError
    from engine.backtest.runner import load_metadata

    try:
        metadata = load_metadata(path)
    except BacktestError as exc:
        raise CommandError(f"--model-path {path}: {exc}") from exc
    source = ModelSource(
        path,
        metadata,
        str(metadata.get("symbol") or options["symbol"] or "BTCUSDT").upper(),
        str(metadata.get("interval") or options["interval"] or "1h"),
    )
    return _checked_source(source, options)


def _checked_source(source: ModelSource, options: dict[str, Any]) -> ModelSource:
    """--symbol/--interval may only repeat the model's own: it was trained on those candles."""
    for option, value in (("symbol", source.symbol), ("interval", source.interval)):
        given = options[option]
        if given is not None and given.upper() != value.upper():
            raise CommandError(f"--{option} {given} does not match the model's {option} {value}")
    return source


def default_output_dir(strategy: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(settings.VAR_DIR) / "backtests" / f"{strategy}_{stamp}_{uuid.uuid4().hex[:6]}"


@contextmanager
def stage_progress(stream: Any, *, disabled: bool) -> Iterator[Progress]:
    """The stage the backtest is in (load, predict, simulate): a tqdm line on a terminal,
    plain lines in a pipe or a log (engine.progress.stage_reporter)."""
    with stage_reporter("backtest", stream=stream, enabled=not disabled) as stage:
        yield stage


# --- summaries --------------------------------------------------------------------------------


def look_record(
    source: ModelSource, computed: ValidationBacktest, user: Any = None
) -> ModelTrial | None:
    """Count a report-only look at the model's policy window as a trial (docs/backtest.md)."""
    if source.model_dir is None:
        return None  # a baseline without a model: nothing of a model was looked at
    window = computed.config.get("policy_window")
    policy_window = (
        (pd.Timestamp(window[0]).to_pydatetime(), pd.Timestamp(window[1]).to_pydatetime())
        if window
        else None
    )
    sharpe = computed.run.metrics.get("sharpe_per_bar")
    return trial_record_for_look(
        model_name=source.model_name,
        version=source.version,
        window=(
            computed.run.window_start.to_pydatetime(),
            computed.run.window_end.to_pydatetime(),
        ),
        policy_window=policy_window,
        sharpe_per_bar=float(sharpe) if isinstance(sharpe, int | float) else None,
        detail={
            "no_db": True,
            "by": user.get_username() if user is not None else None,
            "passed": computed.passed,
            "trials_counted": computed.config.get("trials"),
        },
    )


def summary_of(computed: ValidationBacktest, run: ValidationRun | None) -> dict[str, Any]:
    backtest = computed.run
    return json_safe(
        {
            **backtest.to_dict(),
            "passed": computed.passed,
            "data_content_hash": computed.data_content_hash,
            "config": computed.config,
            "files": {k: str(v) for k, v in computed.files.items()},
            "recorded": run is not None,
            "exploratory": computed.exploratory,
            "exploratory_reasons": computed.exploratory_reasons,
            "trials": computed.config.get("trials"),
            "policy_in_force": computed.config.get("policy_in_force"),
            "plausibility": computed.config.get("plausibility") or [],
        }
    )


def summary_of_run(run: ValidationRun) -> dict[str, Any]:
    version = run.model_version
    version.refresh_from_db()
    report = Path(settings.MEDIA_ROOT) / run.report_dir if run.report_dir else None
    return json_safe(
        {
            "recorded": True,
            "run_id": run.pk,
            "status": run.status,
            "passed": run.passed,
            "in_sample": run.in_sample,
            "exploratory": run.exploratory,
            "exploratory_reasons": run.exploratory_reasons,
            "policy_in_force": (run.config or {}).get("policy_in_force"),
            "plausibility": (run.config or {}).get("plausibility") or [],
            "trials": (run.config or {}).get("trials"),
            "strategy": run.strategy,
            "model_version_id": version.pk,
            "model": f"{version.name} v{version.version}",
            "model_used": registry_model_name(version),
            "version_state": version.state,
            "window_start": run.window_start.isoformat() if run.window_start else None,
            "window_end": run.window_end.isoformat() if run.window_end else None,
            "data_content_hash": run.data_content_hash,
            "metrics": {**run.metrics, "buy_and_hold": run.benchmark_metrics},
            "gates": run.gate_results,
            "failed_gates": [g["name"] for g in run.gate_results if not g.get("passed")],
            "config": run.config,
            "walk_forward": run.metrics.get("walk_forward", []),
            "reproduction": _reproduction_words(run),
            "files": (
                {p.name: str(p) for p in sorted(report.iterdir())}
                if report and report.is_dir()
                else {}
            ),
        }
    )


def policy_lines(summary: dict[str, Any]) -> list[str]:
    """The policy the run was judged under, its too-good-to-be-true warnings, a counted look."""
    lines = []
    policy = summary.get("policy_in_force")
    if policy:
        scope = f"for {policy['scope']}" if policy.get("scope") else "default"
        lines.append(
            f'  judged under policy "{policy["label"]}" v{policy["number"]} ({scope}, '
            f"sha256 {str(policy['hash'])[:12]})"
        )
    lines.extend(f"  WARNING: {warning}" for warning in summary.get("plausibility") or [])
    if summary.get("counted_as_trial"):
        lines.append(
            "  this look overlaps the model's policy window: it is counted as a trial, so "
            "later validations of this model deflate their Sharpe ratio by it"
        )
    return lines


def text_report(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]
    hold = metrics.get("buy_and_hold") or {}
    lines = [_headline(summary), f"  model: {summary.get('model_used')}"]
    if summary.get("exploratory"):
        lines.append(
            "  EXPLORATORY run (it can never validate a version): "
            + "; ".join(summary["exploratory_reasons"])
        )
    lines.extend(policy_lines(summary))
    lines.append(f"  window: {summary['window_start']} to {summary['window_end']}")
    lines.append(f"  data content hash: {summary.get('data_content_hash')}")
    lines.append(f"  {'metric':<28}{'strategy':>14}{'buy and hold':>16}")
    for name in REPORT_METRICS:
        lines.append(f"  {name:<28}{_fmt(metrics.get(name)):>14}{_fmt(hold.get(name)):>16}")
    lines.extend(judgement_lines(metrics))
    if summary.get("reproduction"):
        lines.append(f"  reproduction: {summary['reproduction']}")
    for part in summary.get("walk_forward") or []:
        part_metrics = part["metrics"]
        lines.append(
            f"  part {part['part']}: {part['start']} to {part['end']}: total return "
            f"{_fmt(part_metrics.get('total_return'))}, sharpe {_fmt(part_metrics.get('sharpe'))}, "
            f"trades {part_metrics.get('n_trades')}"
        )
    for gate in summary["gates"]:
        verdict = "pass" if gate["passed"] else "FAIL"
        lines.append(f"  gate {gate['name']:<20}{verdict:<6}{gate.get('detail', '')}")
    lines.extend(f"  {kind}: {path}" for kind, path in summary["files"].items())
    return "\n".join(lines)


def _reproduction_words(run: ValidationRun) -> str | None:
    """Whether the file of a run judged on folds reproduces from its recorded configuration."""
    from models_registry.verdicts import run_reproduction

    found = run_reproduction(run)
    return found.sentence() if found else None


def judgement_lines(metrics: dict[str, Any]) -> list[str]:
    """Trials, PSR and DSR beside the Sharpe ratio, and the baselines the run is judged by."""
    lines = [
        f"  significance: sharpe {_fmt(metrics.get('sharpe'))}, PSR vs buy-and-hold "
        f"{_fmt(metrics.get('psr'))}, DSR {_fmt(metrics.get('dsr'))} over "
        f"{metrics.get('trials', '?')} counted trial(s)"
        + (f" ({metrics['significance_reason']})" if metrics.get("significance_reason") else "")
    ]
    power = metrics.get("power") or {}
    if power.get("sentence"):
        lines.append(f"  power: {power['sentence']} (DSR of the return in excess of buy-and-hold)")
    random = (metrics.get("baselines") or {}).get("random_long_flat")
    if random:
        spread = random["total_return_percentiles"]
        lines.append(
            f"  random long/flat ({random['seeds']} seeds, exposure "
            f"{_fmt(random['exposure'])}, mean hold {_fmt(random['mean_holding_bars'])} bars): "
            f"total return p5 {_fmt(spread['p5'])}, p50 {_fmt(spread['p50'])}, "
            f"p95 {_fmt(spread['p95'])}; the model beats {_fmt(random['model_percentile'])}% "
            "of them; always-flat 0"
        )
    return lines


def _headline(summary: dict[str, Any]) -> str:
    verdict = "PASSED" if summary["passed"] else "FAILED"
    if not summary["recorded"]:
        return (
            f"{summary['strategy']} backtest ({summary['sample_status']}): gates {verdict} "
            "(not recorded: --no-db)"
        )
    moved = (
        "the version moved to validated"
        if summary["version_state"] == "validated"
        and summary["passed"]
        and not summary.get("exploratory")
        else f"the version stays {summary['version_state']}"
    )
    if summary["status"] == "error":
        return f"validation run {summary['run_id']} of {summary['model']} could not run"
    return (
        f"validation run {summary['run_id']} of {summary['model']}: gates {verdict}"
        f"{' (in-sample window)' if summary['in_sample'] else ''}; {moved}"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
