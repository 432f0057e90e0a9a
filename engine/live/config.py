"""Host configuration of the engine: install paths and risk limits.

Risk limits belong to the host (an operator decision), never to the model: they are
read from the environment or from a JSON/INI file on the host, not from metadata.
"""

from __future__ import annotations

import configparser
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INSTALL_ROOT = Path("/opt/ai-trading-bot")
INSTALL_ROOT_ENV = "TRADEBOT_INSTALL_ROOT"
RISK_CONFIG_ENV = "TRADEBOT_RISK_CONFIG"

# Env names of each limit; the same keys (lower case, without prefix) are used in files.
RISK_ENV = {
    "max_position_notional": "TRADEBOT_MAX_POSITION_NOTIONAL",
    "max_daily_loss": "TRADEBOT_MAX_DAILY_LOSS",
    "max_orders_per_hour": "TRADEBOT_MAX_ORDERS_PER_HOUR",
}


class ConfigError(ValueError):
    """The host configuration is unusable; the message names the source and field."""


def install_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(INSTALL_ROOT_ENV) or DEFAULT_INSTALL_ROOT)


def default_model_dir(env: Mapping[str, str] | None = None) -> Path:
    return install_root(env) / "src" / "ml"


def default_status_file(env: Mapping[str, str] | None = None) -> Path:
    return install_root(env) / "var" / "status.json"


def default_journal_dir(env: Mapping[str, str] | None = None) -> Path:
    return install_root(env) / "var" / "journal"


def default_risk_config(env: Mapping[str, str] | None = None) -> Path:
    return install_root(env) / "etc" / "risk.json"


@dataclass(frozen=True)
class RiskLimits:
    """Limits in the quote currency (USDT). None means "no limit" (paper runs only)."""

    max_position_notional: float | None = None
    max_daily_loss: float | None = None
    max_orders_per_hour: int | None = None

    @property
    def is_complete(self) -> bool:
        return None not in (
            self.max_position_notional,
            self.max_daily_loss,
            self.max_orders_per_hour,
        )


def _parse_limit(raw: object, *, field: str, source: str) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {field} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{source}: {field} must be a positive number, got {raw!r}")
    return value


def _read_risk_file(path: Path) -> dict[str, object]:
    """JSON (an object) or INI (a [risk] section), chosen by the file's suffix."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"risk config {path}: cannot read ({exc})") from exc
    if path.suffix.lower() in (".ini", ".cfg", ".conf"):
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"risk config {path}: {exc}") from exc
        if not parser.has_section("risk"):
            raise ConfigError(f"risk config {path}: missing [risk] section")
        values: dict[str, object] = dict(parser.items("risk"))
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"risk config {path}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"risk config {path}: expected a JSON object")
        values = loaded
    unknown = sorted(set(values) - set(RISK_ENV))
    if unknown:
        raise ConfigError(f"risk config {path}: unknown field(s) {', '.join(unknown)}")
    return values


def load_risk_limits(
    config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> RiskLimits:
    """File values first, then environment variables override them field by field.

    Without an explicit file, TRADEBOT_RISK_CONFIG or <root>/etc/risk.json is read if present.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    path = config_file or (Path(env[RISK_CONFIG_ENV]) if env.get(RISK_CONFIG_ENV) else None)
    if path is None and default_risk_config(env).exists():
        path = default_risk_config(env)
    if path is not None:
        if not path.exists():
            raise ConfigError(f"risk config {path}: file not found")
        for key, raw in _read_risk_file(path).items():
            values[key] = raw
            sources[key] = f"risk config {path}"
    for key, env_name in RISK_ENV.items():
        if env.get(env_name, "").strip():
            values[key] = env[env_name]
            sources[key] = f"environment {env_name}"
    parsed = {
        key: _parse_limit(values.get(key), field=key, source=sources.get(key, "default"))
        for key in RISK_ENV
    }
    orders = parsed["max_orders_per_hour"]
    if orders is not None and orders != int(orders):
        raise ConfigError(
            f"{sources['max_orders_per_hour']}: max_orders_per_hour must be a whole number"
        )
    return RiskLimits(
        max_position_notional=parsed["max_position_notional"],
        max_daily_loss=parsed["max_daily_loss"],
        max_orders_per_hour=None if orders is None else int(orders),
    )
