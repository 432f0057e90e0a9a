"""Deployment targets on this machine (`is_local`): the demo's staging and production hosts.

The same deployment steps run through a local context instead of SSH; the
"service" is the real engine replaying stored candles, (re)started by
`deployment.local_service` in place of systemd.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from django.conf import settings

from models_registry.models import DeploymentTarget

MODEL_DIR = "src/ml"


def forward_engine_command(*, binance_url: str, fng_url: str) -> list[str]:
    """The staging service of the demo: paper trading the (fake) exchange's live candles on
    the exchange's clock, as a staging host trades Binance's on the real one."""
    return [
        sys.executable, "-m", "engine.live", "ml_basic", "--paper-trading",
        "--model-dir", "{model_dir}", "--model", "{name}", "--status-file", "{status_file}",
        "--journal-dir", "{install_root}/var/journal", "--clock", "exchange",
        "--poll-seconds", "0.02", "--binance-url", binance_url, "--fng-url", fng_url,
    ]  # fmt: skip


def engine_command(*, data_dir: Path, replay_from: str, speed: float) -> list[str]:
    return [
        sys.executable, "-m", "engine.live", "ml_basic", "--paper-trading",
        "--model-dir", "{model_dir}", "--model", "{name}", "--status-file", "{status_file}",
        "--journal-dir", "{install_root}/var/journal",
        "--replay", "--data-dir", str(data_dir), "--from", replay_from, "--speed", str(speed),
    ]  # fmt: skip


def local_target_ensure(
    *,
    name: str,
    environment: str,
    install_root: Path,
    replay_from: str,
    speed: float = 1800.0,
    data_dir: Path | None = None,
    exchange: tuple[str, str] | None = None,
) -> DeploymentTarget:
    """Create (or update) a local target whose service is the engine replaying the store,
    or, given ``exchange`` (Binance and Fear & Greed URLs), paper trading it forward."""
    # The folders a first manual install would make: the deploy's preflight refuses a
    # host without its model folder, and the supervisor writes its pid and log in var/.
    (install_root / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    (install_root / "var").mkdir(parents=True, exist_ok=True)
    engine = (
        forward_engine_command(binance_url=exchange[0], fng_url=exchange[1])
        if exchange
        else engine_command(
            data_dir=data_dir or Path(settings.TRADEBOT_DATA_DIR),
            replay_from=replay_from,
            speed=speed,
        )
    )
    supervisor = [sys.executable, "-m", "deployment.local_service", "restart", "--root",
                  "{install_root}", "--"]  # fmt: skip
    # The templates are filled by deployment/ ({install_root}, {model_dir}, ...); quoting
    # keeps paths with spaces intact once they are.
    restart = " ".join(_quote_template(part) for part in supervisor + engine)
    check = " ".join(
        _quote_template(part)
        for part in [sys.executable, "-m", "engine.live", "ml_basic", "--check-only", "--json",
                     "--model-dir", "{candidate_dir}", "--model", "{name}"]
    )  # fmt: skip
    target, _ = DeploymentTarget.objects.update_or_create(
        name=name,
        defaults={
            "environment": environment,
            "is_local": True,
            "install_root": str(install_root),
            "model_dir": MODEL_DIR,
            "upload_dir": str(install_root.parent / f"{install_root.name}-upload"),
            "restart_command": f"cd {shlex.quote(str(settings.BASE_DIR))} && {restart}",
            "stop_command": f"cd {shlex.quote(str(settings.BASE_DIR))} && "
            + " ".join(
                _quote_template(part)
                for part in [*supervisor[:3], "stop", "--root", "{install_root}"]
            ),
            "log_command": "tail -n 200 {install_root}/var/engine.log",
            "check_command": f"cd {shlex.quote(str(settings.BASE_DIR))} && {check}",
            "health_timeout_seconds": 60,
            "command_timeout_seconds": 60,
        },
    )
    return target


def _quote_template(part: str) -> str:
    """Quote a word, leaving deployment/'s {placeholders} for it to fill."""
    if part.startswith("{") and part.endswith("}"):
        return part
    if "{" in part:
        return part  # a path under a placeholder, e.g. {install_root}/var/journal
    return shlex.quote(part)
