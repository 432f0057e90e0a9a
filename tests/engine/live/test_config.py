"""Risk limits come from the host (env, JSON or INI), never from the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.live.config import ConfigError, RiskLimits, load_risk_limits


def test_json_file_then_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "risk.json"
    path.write_text(
        '{"max_position_notional": 500, "max_daily_loss": 50, "max_orders_per_hour": 4}'
    )
    limits = load_risk_limits(path, env={"TRADEBOT_MAX_DAILY_LOSS": "25"})
    assert limits == RiskLimits(
        max_position_notional=500.0, max_daily_loss=25.0, max_orders_per_hour=4
    )
    assert limits.is_complete


def test_ini_file(tmp_path: Path) -> None:
    path = tmp_path / "risk.ini"
    path.write_text("[risk]\nmax_position_notional = 100\n")
    limits = load_risk_limits(path, env={})
    assert limits.max_position_notional == 100.0
    assert not limits.is_complete


def test_default_file_under_the_install_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "risk.json").write_text('{"max_orders_per_hour": 2}')
    limits = load_risk_limits(env={"TRADEBOT_INSTALL_ROOT": str(tmp_path)})
    assert limits.max_orders_per_hour == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"max_daily_loss": -5}', "max_daily_loss must be a positive number"),
        ('{"max_daily_loss": "lots"}', "max_daily_loss must be a number"),
        ('{"max_orders_per_hour": 1.5}', "max_orders_per_hour must be a whole number"),
        ('{"max_leverage": 3}', "unknown field"),
        ("{oops", "invalid JSON at line 1"),
    ],
)
def test_bad_values_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "risk.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_risk_limits(path, env={})
    assert "risk.json" in str(caught.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRADEBOT_MAX_POSITION_NOTIONAL"):
        load_risk_limits(env={"TRADEBOT_MAX_POSITION_NOTIONAL": "abc"})
