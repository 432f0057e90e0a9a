"""Settings from the environment: safe in production, clear about what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import environ
import pytest

from tradebot.config import (
    SettingError,
    broker_transport_options,
    database_from_env,
    require_production_safety,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_KEY = "k3y-" + "".join(chr(65 + (i * 7) % 26) for i in range(60))


def env_with(**values: str) -> environ.Env:
    env = environ.Env()
    for key in ("DATABASE_URL",):
        os.environ.pop(key, None)
    os.environ.update(values)
    return env


@pytest.fixture(autouse=True)
def keep_environment():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_embedded_default_is_sqlite_with_wal_and_busy_timeout(tmp_path: Path) -> None:
    config = database_from_env(env_with(), default_sqlite=tmp_path / "db.sqlite3")
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
    assert config["OPTIONS"]["timeout"] >= 10


def test_postgres_url_selects_psycopg_backend(tmp_path: Path) -> None:
    config = database_from_env(
        env_with(DATABASE_URL="postgres://u:secret@db.example:5433/trade"),
        default_sqlite=tmp_path / "x",
    )
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example", 5433, "trade")


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgres://u:pw@host:notaport/db", "just-garbage", "postgres://"],
)
def test_malformed_database_url_names_the_variable_and_hides_password(
    url: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingError) as caught:
        database_from_env(env_with(DATABASE_URL=url), default_sqlite=tmp_path / "x")
    assert "DATABASE_URL" in str(caught.value)
    assert ":pw@" not in str(caught.value)


@pytest.mark.parametrize("url", ["amqp://guest@localhost//", "redis://host:port/0", "nonsense"])
def test_malformed_broker_url_names_the_variable(url: str, tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="CELERY_BROKER_URL"):
        broker_transport_options(url, folder=tmp_path)


def test_filesystem_broker_gets_its_folders(tmp_path: Path) -> None:
    options = broker_transport_options("filesystem://", folder=tmp_path / "broker")
    assert Path(options["data_folder_in"]).is_dir()
    assert options["data_folder_in"] == options["data_folder_out"]


@pytest.mark.parametrize(
    ("debug", "key", "hosts", "complaint"),
    [
        (True, REAL_KEY, ["bot.example"], "DEBUG"),
        (False, "", ["bot.example"], "SECRET_KEY is missing"),
        (False, "dev-insecure-" + "x" * 50, ["bot.example"], "placeholder"),
        (False, "short-but-random-Q1w2", ["bot.example"], "shorter than 50"),
        (False, REAL_KEY, ["*"], "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_unsafe_settings(debug, key, hosts, complaint) -> None:
    with pytest.raises(SettingError, match=complaint):
        require_production_safety(
            environment="production", debug=debug, secret_key=key, allowed_hosts=hosts
        )


def test_production_start_names_the_wrong_setting() -> None:
    env = {**os.environ, "ENVIRONMENT": "production", "DEBUG": "true", "SECRET_KEY": REAL_KEY}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DEBUG is on with ENVIRONMENT=production" in result.stderr


def audit_witness_env(tmp_path: Path) -> dict[str, str]:
    """The audit key and anchor sink production requires (check --deploy, #26)."""
    key = tmp_path / "audit.key"
    key.write_text("a-production-audit-key-outside-the-database\n")
    return {
        "AUDIT_HMAC_KEY_FILE": str(key),
        "AUDIT_ANCHOR_FILE": str(tmp_path / "anchors"),
        "AUDIT_MIN_WITNESSES": "1",
    }


def test_deploy_check_passes_without_warnings_in_production(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECRET_KEY": REAL_KEY,
        "ALLOWED_HOSTS": "bot.example",
        "TRADEBOT_VAR_DIR": str(tmp_path),
        **audit_witness_env(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("missing", "complaint"),
    [
        ("AUDIT_HMAC_KEY_FILE", "no audit key"),
        ("AUDIT_ANCHOR_FILE", "no anchor sink"),
        ("AUDIT_MIN_WITNESSES", "AUDIT_MIN_WITNESSES is 0"),
    ],
)
def test_deploy_check_fails_in_production_without_the_audit_key_or_anchor_sink(
    missing: str, complaint: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECRET_KEY": REAL_KEY,
        "ALLOWED_HOSTS": "bot.example",
        "TRADEBOT_VAR_DIR": str(tmp_path),
        **audit_witness_env(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    env.pop(missing)
    env.pop("AUDIT_HMAC_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "models_registry.E101" in result.stderr and complaint in result.stderr
    # Outside --deploy the check does not run: a developer's `check` is not blocked.
    plain = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_a_missing_secret_key_stops_the_process_outside_development(
    environment: str, tmp_path: Path
) -> None:
    env = {**os.environ, "ENVIRONMENT": environment, "DEBUG": "false",
           "ALLOWED_HOSTS": "bot.example", "TRADEBOT_VAR_DIR": str(tmp_path)}  # fmt: skip
    env.pop("SECRET_KEY", None)
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"SECRET_KEY is missing with ENVIRONMENT={environment}" in result.stderr
    # Only development and test run on the public development key.
    for keyless in ("development", "test"):
        ok = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=PROJECT_ROOT, env={**env, "ENVIRONMENT": keyless}, capture_output=True, text=True,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr


def test_staging_refuses_the_placeholder_key() -> None:
    with pytest.raises(SettingError, match="placeholder"):
        require_production_safety(
            environment="staging", debug=True, secret_key="dev-insecure-" + "x" * 50,
            allowed_hosts=["localhost"],
        )  # fmt: skip
