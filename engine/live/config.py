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


# --------------------------------------------------------------------------- trading costs
#
# The registry ships the costs of the validation policy in force with every model it
# deploys: `<model_dir>/<name>_costs.json`, uploaded, sha-verified, swapped, kept and rolled
# back together with the model files (docs/deployment.md). The engine trades at those costs;
# a flag may only make them higher (stricter), never lower.

COSTS_SUFFIX = "_costs.json"
COST_FIELDS = ("fee_bps", "slippage_bps")
COSTS_FILE_FIELDS = (
    "model_name",
    *COST_FIELDS,
    "policy_id",
    "policy_number",
    "policy_label",
    "policy_scope",
    "policy_hash",
)
_HEX = frozenset("0123456789abcdef")


def costs_file(model_dir: Path, name: str) -> Path:
    """Where the registry puts the policy costs of model `name` (docs/interfaces.md)."""
    return Path(model_dir) / f"{name}{COSTS_SUFFIX}"


@dataclass(frozen=True)
class PolicyCosts:
    """The costs file's content: the policy's costs and which policy they are."""

    model_name: str
    fee_bps: float
    slippage_bps: float
    policy_id: int
    policy_number: int
    policy_label: str
    policy_scope: str
    policy_hash: str


@dataclass(frozen=True)
class EngineCosts:
    """The costs the engine trades at, and where they come from.

    `source` is "policy" (the costs file), "flags above policy" (explicit flags, at least
    the file's costs), "flags" or "engine defaults" (no costs file). `policy` is the file's
    content when there is one.
    """

    fee_bps: float
    slippage_bps: float
    source: str
    policy: PolicyCosts | None = None
    path: Path | None = None

    @property
    def at_policy(self) -> bool:
        return (
            self.policy is not None
            and self.fee_bps == self.policy.fee_bps
            and self.slippage_bps == self.policy.slippage_bps
        )

    def record(self) -> dict[str, object]:
        """What the status file and the journal's session_start say of the costs."""
        policy = self.policy
        return {
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "source": self.source,
            "at_policy": self.at_policy,
            "file": None if self.path is None else str(self.path),
            "policy_fee_bps": None if policy is None else policy.fee_bps,
            "policy_slippage_bps": None if policy is None else policy.slippage_bps,
            "policy_id": None if policy is None else policy.policy_id,
            "policy_number": None if policy is None else policy.policy_number,
            "policy_hash": None if policy is None else policy.policy_hash,
        }

    def describe(self) -> str:
        costs = f"fee {self.fee_bps:g} bps, slippage {self.slippage_bps:g} bps"
        if self.policy is None:
            return f"{costs} from {self.source} (no policy costs file)"
        return (
            f"{costs} from {self.source} ({self.path}: policy #{self.policy.policy_id} "
            f'"{self.policy.policy_label}" v{self.policy.policy_number}, '
            f"sha256 {self.policy.policy_hash[:12]})"
        )


class _JsonConstant(str):
    """NaN, Infinity or -Infinity as written in the file: kept as the token, so that the
    field holding it is refused by name (JSON itself has no such numbers)."""

    def __repr__(self) -> str:
        return f"{self!s} (not a number JSON allows)"


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # {"fee_bps": 0, "fee_bps": 10} reads as 10 in Python and as 0 elsewhere: ambiguous.
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"field {key!r} appears twice")
        document[key] = value
    return document


def _cost_value(raw: object, *, field: str, where: str) -> float:
    # A JSON number only: "10" (a string), true (a bool), NaN or Infinity mean that
    # something other than the registry wrote the file.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"{where}: {field} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except OverflowError:  # an integer past the largest float: no cost is that
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {field} must be a finite number >= 0, got {raw!r}")
    return value


def _whole_number(raw: object, *, field: str, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError(f"{where}: {field} must be a whole number >= 1, got {raw!r}")
    return raw


def _text(raw: object, *, field: str, where: str) -> str:
    if not isinstance(raw, str) or isinstance(raw, _JsonConstant):
        raise ConfigError(f"{where}: {field} must be a string, got {raw!r}")
    return raw


def parse_costs_document(raw: bytes, *, where: str, model_name: str) -> PolicyCosts:
    """The costs file's bytes as `PolicyCosts`, or ConfigError naming `where` and the field."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = json.loads(
            text, parse_constant=_JsonConstant, object_pairs_hook=_object_without_duplicates
        )
    except ValueError as exc:  # JSONDecodeError, or a key written twice
        raise ConfigError(f"{where}: invalid JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - set(COSTS_FILE_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [key for key in COSTS_FILE_FIELDS if key not in document]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    named = _text(document["model_name"], field="model_name", where=where)
    if named != model_name:
        raise ConfigError(f"{where}: model_name is {named!r}, the engine runs {model_name!r}")
    digest = _text(document["policy_hash"], field="policy_hash", where=where)
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ConfigError(f"{where}: policy_hash must be 64 lowercase hex digits, got {digest!r}")
    return PolicyCosts(
        model_name=named,
        fee_bps=_cost_value(document["fee_bps"], field="fee_bps", where=where),
        slippage_bps=_cost_value(document["slippage_bps"], field="slippage_bps", where=where),
        policy_id=_whole_number(document["policy_id"], field="policy_id", where=where),
        policy_number=_whole_number(document["policy_number"], field="policy_number", where=where),
        policy_label=_text(document["policy_label"], field="policy_label", where=where),
        policy_scope=_text(document["policy_scope"], field="policy_scope", where=where),
        policy_hash=digest,
    )


def read_policy_costs(model_dir: Path, name: str) -> PolicyCosts | None:
    """The policy costs shipped with model `name`, None when the folder has no costs file."""
    path = costs_file(model_dir, name)
    where = f"costs file {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror or exc})") from None
    return parse_costs_document(raw, where=where, model_name=name)


def resolve_costs(
    model_dir: Path,
    name: str,
    *,
    fee_bps: float | None,
    slippage_bps: float | None,
    default_fee_bps: float,
    default_slippage_bps: float,
) -> EngineCosts:
    """The costs to trade at: the costs file's, or explicit flags at or above them.

    `fee_bps`/`slippage_bps` are the explicit flags (None when not given). Below the file's
    costs is refused: a host never trades cheaper than the policy the model was approved
    under. Without a file, the flags or the engine's defaults apply (and say so).
    """
    flags = {"fee_bps": fee_bps, "slippage_bps": slippage_bps}
    for field, value in flags.items():
        if value is not None:
            _cost_value(value, field=field, where=f"--{field.replace('_', '-')}")
    policy = read_policy_costs(model_dir, name)
    if policy is None:
        given = fee_bps is not None or slippage_bps is not None
        return EngineCosts(
            fee_bps=default_fee_bps if fee_bps is None else float(fee_bps),
            slippage_bps=default_slippage_bps if slippage_bps is None else float(slippage_bps),
            source="flags" if given else "engine defaults",
        )
    path = costs_file(model_dir, name)
    chosen: dict[str, float] = {}
    for field, value in flags.items():
        floor = float(getattr(policy, field))
        if value is not None and float(value) < floor:
            raise ConfigError(
                f"--{field.replace('_', '-')} {float(value):g} is below the policy's "
                f"{floor:g} in {path} (policy sha256 {policy.policy_hash[:12]}): the engine "
                "trades at the policy's costs or higher, never lower"
            )
        chosen[field] = floor if value is None else float(value)
    above = any(chosen[field] != getattr(policy, field) for field in COST_FIELDS)
    return EngineCosts(
        fee_bps=chosen["fee_bps"],
        slippage_bps=chosen["slippage_bps"],
        source="flags above policy" if above else "policy",
        policy=policy,
        path=path,
    )
