"""train_model BTCUSDT [--force-price-only]: train on the stored history, export ONNX, register.

A thin wrapper over models_registry.services.training: parse the options, show
a progress bar per epoch, report the result. Refused with ENVIRONMENT=production.
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from engine.dates import iso_date_argument
from engine.progress import progress_reporter
from engine.training.config import EpochCallback
from models_registry.management.commands._users import user_named
from models_registry.models import ModelVersion
from models_registry.services.training import (
    DEFAULT_MAX_FILL,
    GAP_POLICIES,
    TrainingArtifacts,
    TrainingRefused,
    refuse_training_in_production,
    registered_artifacts,
    training_artifacts_build,
    training_run,
)

# Command-line destinations handed to the service as its options dict.
SERVICE_OPTIONS = (
    "interval",
    "start",
    "end",
    "epochs",
    "window",
    "units",
    "seed",
    "horizon",
    "objective",
    "entry",
    "exit",
    "min_hold",
    "search",
    "force_price_only",
    "allow_short_history",
    "allow_missing_conditions",
    "gap_policy",
    "max_fill",
    "data_dir",
    "hold_out_days",
)


class Command(BaseCommand):
    help = (
        "Train a model for a symbol on the candles (and Fear & Greed sentiment) in the data "
        "store, export it to ONNX with its metadata and training plot, and register it as a "
        "new 'trained' version. Never runs with ENVIRONMENT=production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol", help="e.g. BTCUSDT")
        self._add_data_arguments(parser)
        self._add_model_arguments(parser)
        self._add_output_arguments(parser)

    def _add_data_arguments(self, parser: ArgumentParser) -> None:
        group = parser.add_argument_group("data")
        group.add_argument("--interval", default="1h", help="candle interval (default: 1h)")
        group.add_argument("--start", type=iso_date_argument, help="UTC start (inclusive)")
        group.add_argument("--end", type=iso_date_argument, help="UTC end (exclusive)")
        group.add_argument(
            "--data-dir",
            default=None,
            help="data store folder (default: settings.TRADEBOT_DATA_DIR)",
        )
        group.add_argument(
            "--gap-policy",
            choices=GAP_POLICIES,
            default="refuse",
            help="missing candles: refuse to train (default), or forward-fill gaps of at most "
            "--max-fill bars and record the repair in the metadata",
        )
        group.add_argument(
            "--max-fill",
            type=int,
            default=DEFAULT_MAX_FILL,
            help=f"with --gap-policy ffill: longest gap to fill, in bars (default: "
            f"{DEFAULT_MAX_FILL})",
        )
        group.add_argument(
            "--hold-out-days",
            type=float,
            default=None,
            help="without --end: the newest days kept out of training for the policy "
            "validation and the paper run (default: the validation policy's days + 14)",
        )
        group.add_argument(
            "--force-price-only",
            action="store_true",
            help="train without sentiment (a *_price model)",
        )
        group.add_argument(
            "--allow-short-history",
            action="store_true",
            help="train on less than six months of data, for an experiment only: recorded, "
            "and such a version can never pass a validation gate",
        )

    def _add_model_arguments(self, parser: ArgumentParser) -> None:
        group = parser.add_argument_group("model (defaults: engine.training.TrainingConfig)")
        group.add_argument("--epochs", type=int, default=None, help="most epochs to train")
        group.add_argument("--window", type=int, default=None, help="bars the model looks at")
        group.add_argument("--units", type=int, default=None, help="width of the network")
        group.add_argument("--seed", type=int, default=None, help="random seed")
        group.add_argument(
            "--horizon", type=int, default=None, help="bars ahead the target looks, 1 to 24"
        )
        group.add_argument(
            "--objective",
            choices=("regression", "classification"),
            default=None,
            help="regress the horizon log return, or classify its sign (calibrated probability)",
        )
        group.add_argument(
            "--entry",
            type=float,
            default=None,
            help="ml_basic entry, in the model's units: margin over one round trip for a "
            "regression, a probability for a classifier",
        )
        group.add_argument(
            "--exit",
            type=float,
            default=None,
            help="ml_basic exit level (model's units): stay long while the prediction is above",
        )
        group.add_argument(
            "--min-hold", type=int, default=None, help="ml_basic minimum bars held per trade"
        )
        group.add_argument(
            "--allow-missing-conditions",
            default=None,
            metavar="REASON",
            help="register even if the training data lacks an up, down or sideways window "
            "(TRADEBOT_MARKET_CONDITIONS); the written reason is an audit event",
        )
        group.add_argument(
            "--search",
            type=int,
            default=None,
            metavar="N",
            help="run N Optuna trials on the training and selection splits; keep the best",
        )

    def _add_output_arguments(self, parser: ArgumentParser) -> None:
        group = parser.add_argument_group("output")
        group.add_argument(
            "--output-dir",
            type=Path,
            default=None,
            help="also leave the three artifacts in this folder (required with --no-db)",
        )
        group.add_argument(
            "--no-db",
            action="store_true",
            help="do not register a version: only write the artifacts to --output-dir",
        )
        group.add_argument("--user", default=None, help="username recorded as who trained it")
        group.add_argument(
            "--json", action="store_true", help="print a machine-readable JSON summary only"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        symbol = options["symbol"].upper()
        service_options = {name: options[name] for name in SERVICE_OPTIONS}
        if service_options["data_dir"] is not None:
            service_options["data_dir"] = str(service_options["data_dir"])
        try:
            refuse_training_in_production()
            summary = self._train(symbol, service_options, options)
        except TrainingRefused as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str))
        else:
            self.stdout.write(_text_summary(summary))

    def _train(
        self, symbol: str, service_options: dict[str, Any], options: dict[str, Any]
    ) -> dict[str, Any]:
        output_dir: Path | None = options["output_dir"]
        if options["no_db"]:
            if output_dir is None:
                raise CommandError(
                    "--no-db needs --output-dir: without the registry the artifacts must go "
                    "somewhere, or the trained model would be thrown away"
                )
            with epoch_progress(disabled=options["json"]) as on_epoch:
                artifacts = training_artifacts_build(
                    symbol=symbol,
                    options=service_options,
                    output_dir=output_dir,
                    on_epoch=on_epoch,
                    on_trial=trial_progress(disabled=options["json"], stderr=self.stderr),
                )
            return training_summary(artifacts, None)
        user = user_named(options["user"])
        with epoch_progress(disabled=options["json"]) as on_epoch:
            version = training_run(
                symbol=symbol,
                options=service_options,
                requested_by=user,
                on_epoch=on_epoch,
                output_dir=output_dir,
                on_trial=trial_progress(disabled=options["json"], stderr=self.stderr),
            )
        return training_summary(registered_artifacts(version), version)


@contextmanager
def epoch_progress(*, disabled: bool) -> Iterator[EpochCallback]:
    """A tqdm bar on stderr, one step per epoch, showing the latest losses.

    Created at the first epoch, so a run refused before training shows no bar.
    """
    if not disabled and not sys.stderr.isatty():
        # In a pipe or a log: plain lines, never a bar's carriage returns.
        with progress_reporter("training", unit="epoch") as update:
            yield lambda epoch, total, _logs: update(epoch, total)
        return
    bars: list[tqdm] = []

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        if not bars:
            bars.append(tqdm(desc="training", unit="epoch", total=total, disable=disabled))
        bar = bars[0]
        if epoch <= bar.n:  # a search's next trial starts its epochs again
            bar.reset(total=total)
        bar.update(epoch - bar.n)
        bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss", "val_loss")})

    try:
        yield on_epoch
    finally:
        for bar in bars:
            bar.close()


def trial_progress(*, disabled: bool, stderr: Any) -> Any:
    """One line per finished trial (the epoch bar shows the running one)."""

    def on_trial(number: int, total: int, record: dict[str, Any]) -> None:
        if disabled:
            return
        value = record.get("value")
        shown = "failed: " + record.get("error", "") if value is None else f"{value:.6g}"
        stderr.write(f"trial {number + 1}/{total} {record['state']}: {shown}")

    return on_trial


def training_summary(artifacts: TrainingArtifacts, version: ModelVersion | None) -> dict[str, Any]:
    metadata = artifacts.metadata
    return {
        "registered": version is not None,
        "model_version_id": version.pk if version else None,
        "name": metadata["name"],
        "version": version.version if version else None,
        "state": version.state if version else None,
        "symbol": metadata["symbol"],
        "interval": metadata["interval"],
        "kind": metadata["kind"],
        "uses_sentiment": metadata["uses_sentiment"],
        "sentiment_reason": metadata.get("sentiment_reason"),
        "allow_short_history": metadata.get("allow_short_history", False),
        "artifacts": artifacts.paths,
        "onnx_sha256": metadata["onnx_sha256"],
        "metrics": metadata.get("metrics", {}),
        "parity_max_abs_diff": metadata.get("parity", {}).get("max_abs_diff"),
        "data": {
            k: metadata["data"].get(k) for k in ("start", "end", "rows", "content_hash", "held_out")
        },
        "horizon": metadata.get("horizon"),
        "objective": metadata.get("objective"),
        "strategy": metadata.get("strategy"),
        "duration_seconds": metadata.get("duration_seconds"),
        "warnings": metadata.get("warnings", []),
    }


def _text_summary(summary: dict[str, Any]) -> str:
    test = summary["metrics"].get("test", {})
    accuracy = test.get("directional_accuracy")
    headline = (
        f"registered {summary['name']} version {summary['version']} "
        f"(id {summary['model_version_id']}, state {summary['state']})"
        if summary["registered"]
        else f"trained {summary['name']} (not registered: --no-db)"
    )
    lines = [
        headline,
        f"  sentiment: {summary['sentiment_reason']}",
        f"  test loss {test.get('loss')}, directional accuracy "
        f"{'n/a' if accuracy is None else f'{accuracy:.3f}'}",
        f"  ONNX/Keras parity: max abs diff {summary['parity_max_abs_diff']:.3g}",
        *_strategy_lines(summary),
        *(f"  {kind}: {path}" for kind, path in summary["artifacts"].items()),
        *(f"  warning: {warning}" for warning in summary["warnings"]),
    ]
    return "\n".join(lines)


def _strategy_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    strategy = summary.get("strategy") or {}
    params = strategy.get("params") or {}
    if params:
        levels = strategy.get("levels_from")
        source = (
            f" (quantiles {levels['entry_quantile']:g}/{levels['exit_quantile']:g} of its "
            f"{levels['split']}-split predictions)"
            if levels
            else ""
        )
        lines.append(
            f"  trades with ml_basic on {strategy.get('units')}: horizon {summary.get('horizon')} "
            f"bars, enter above {params['entry']:.6g}, stay while above {params['exit']:.6g}, "
            f"min hold {params.get('min_hold', 0)}{source}"
        )
    held_out = (summary.get("data") or {}).get("held_out")
    if held_out:
        lines.append(
            f"  kept unseen: {held_out['from']} to {held_out['until']} ({held_out['why']}); "
            "validate with run_backtest ml_basic"
        )
    return lines
