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


def test_deploy_check_passes_without_warnings_in_production(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECRET_KEY": REAL_KEY,
        "ALLOWED_HOSTS": "bot.example",
        "TRADEBOT_VAR_DIR": str(tmp_path),
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
