"""run_live_trading ml_basic --paper-trading [...]: the engine, started from Django.

A thin wrapper around ``python -m engine.live`` (engine.live.cli.main), run in this process
with the same options. Only the defaults differ: where the engine would look under its
install root (/opt/ai-trading-bot), this command uses folders of this Django installation:

  --data-dir     settings.TRADEBOT_DATA_DIR (the candle and sentiment store)
  --model-dir    the artifact folder of the version in production (from the registry;
                 with several in production, --model NAME picks one), named in the output;
                 it then trades at the costs of the policy in force for that model
                 (--fee-bps/--slippage-bps below them are refused), as a host would
  --journal-dir  <VAR_DIR>/live/journal
  --status-file  <VAR_DIR>/live/status.json

``run_live_trading reset-kill-switch --reason TEXT`` unlatches the kill switch in the same
journal folder. The engine installs its own SIGTERM/SIGINT handlers (finish the step, save,
exit 0), and this command exits with the engine's exit code.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DatabaseError

from engine.live import cli as engine_cli
from engine.strategies import STRATEGIES


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the engine's option list (the epilog) laid out as the engine prints it."""


def default_paths() -> dict[str, Path]:
    """Engine option -> its default on this Django installation (the model folder aside)."""
    live = Path(settings.VAR_DIR) / "live"
    return {
        "--data-dir": Path(settings.TRADEBOT_DATA_DIR),
        "--journal-dir": live / "journal",
        "--status-file": live / "status.json",
    }


def production_model_dir(model_name: str | None) -> tuple[Path, str]:
    """The artifact folder of the version in production, and a line naming it.

    CommandError (one line, naming --model-dir) when there is none, or several and no
    --model to choose between them.
    """
    folder, line, _ = _production_model(model_name)
    return folder, line


def _production_model(model_name: str | None) -> tuple[Path, str, str]:
    """``production_model_dir`` and the version's model name."""
    from models_registry.models import ModelState, ModelVersion
    from models_registry.services.model_versions import version_dir

    versions = ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("name")
    if model_name:
        versions = versions.filter(name=model_name)
    try:
        found = list(versions)
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(
            f"cannot read the registry for the model in production ({first_line}): "
            "give --model-dir DIR, or run migrate."
        ) from exc
    if not found:
        which = f"{model_name} has" if model_name else "no model has"
        raise CommandError(
            f"{which} a version in production in the registry: give --model-dir DIR "
            f"(a folder with <model>.onnx and <model>_metadata.json)."
        )
    if len(found) > 1:
        names = ", ".join(f"{v.name} v{v.version}" for v in found)
        raise CommandError(f"several versions are in production ({names}): add --model NAME.")
    version = found[0]
    folder = version_dir(version)
    line = f"model: {version.name} v{version.version} (in production), from {folder}"
    return folder, line, version.name


def policy_cost_args(argv: list[str], model_name: str) -> tuple[list[str], str]:
    """The policy's costs for ``model_name`` as engine flags where none was given, and a line
    naming them; CommandError (one line) for a flag below the policy's cost.

    The registry's artifact folder has no ``<name>_costs.json`` (a deploy writes that on the
    host), so the policy reaches this engine as flags, held to the same floor.
    """
    from models_registry.policy import CostPolicy, policy_in_force, policy_name

    policy = policy_in_force(model_name)
    costs = CostPolicy.of(policy)
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--fee-bps", "--slippage-bps"):
        parser.add_argument(option, type=float)
    given, _ = parser.parse_known_args(argv[1:])
    added: list[str] = []
    for option in ("--fee-bps", "--slippage-bps"):
        floor = getattr(costs, _dest(option))
        value = getattr(given, _dest(option))
        if value is None:
            added += [option, repr(floor)]
        elif value < floor:
            raise CommandError(
                f"{option} {value:g} is below the cost of the policy in force for {model_name} "
                f"({floor:g}, {policy_name(policy)}): the engine trades at the policy's costs "
                "or higher."
            )
    line = (
        f"costs: fee {costs.fee_bps:g} bps, slippage {costs.slippage_bps:g} bps at least "
        f"(the policy in force, {policy_name(policy)})"
    )
    return [*argv, *added], line


def engine_argv(argv: list[str]) -> list[str]:
    """The engine's argv: ``argv`` plus this installation's folders where none was given."""
    defaults = default_paths()
    if argv and argv[0] == "reset-kill-switch":
        defaults = {"--journal-dir": defaults["--journal-dir"]}
    # The engine's own parser says what was given (abbreviations and --opt=value included).
    parser = argparse.ArgumentParser(add_help=False)
    for option in defaults:
        parser.add_argument(option)
    given, _ = parser.parse_known_args(argv)
    missing = [option for option in defaults if getattr(given, _dest(option)) is None]
    return [*argv, *(str(part) for option in missing for part in (option, defaults[option]))]


def needs_model_dir(argv: list[str]) -> tuple[bool, str | None]:
    """Whether the engine will need a model folder none was given for, and --model's value."""
    if not argv or argv[0] == "reset-kill-switch":
        return False, None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model-dir")
    parser.add_argument("--model", dest="model_name")
    given, _ = parser.parse_known_args(argv[1:])
    spec = STRATEGIES.get(argv[0])
    return bool(spec and spec.needs_model and given.model_dir is None), given.model_name


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


class Command(BaseCommand):
    help = (
        "Run the trading engine (python -m engine.live) with a model loaded once at start-up: "
        "paper trading by default, --replay for a replayed paper session, --live for real "
        "orders. Every option after the strategy is the engine's (listed below)."
    )
    # The engine reads no database (this command reads the registry once, for the default
    # model folder); skip Django's system checks for a faster start.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(
            prog_name, subcommand, formatter_class=_HelpFormatter, **kwargs
        )
        # The raw formatter keeps the engine's option list intact; wrap our own text by hand.
        parser.description = textwrap.fill(self.help, 79)
        parser.epilog = _engine_help(default_paths())
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "strategy", help="strategy name (ml_basic, buy_and_hold) or reset-kill-switch"
        )
        # Everything after the strategy goes to the engine untouched, so its options
        # (including its -v) never collide with Django's.
        parser.add_argument("engine_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        argv = engine_argv([options["strategy"], *options["engine_args"]])
        wanted, model_name = needs_model_dir(argv)
        if wanted:
            folder, line, name = _production_model(model_name)
            argv, costs_line = policy_cost_args(argv, name)
            self.stdout.write(line)
            self.stdout.write(costs_line)
            self.stdout.flush()
            argv = [*argv, "--model-dir", str(folder)]
        code = engine_cli.main(argv)
        sys.stdout.flush()
        if code:
            raise SystemExit(code)


def _engine_help(defaults: dict[str, Path]) -> str:
    lines = ["defaults on this installation:"]
    lines.extend(f"  {option:<14} {path}" for option, path in defaults.items())
    lines.append("")
    lines.append("engine options (python -m engine.live --help):")
    usage = engine_cli.build_parser().format_help()
    lines.extend(f"  {line}" if line else "" for line in usage.splitlines())
    return "\n".join(lines)
