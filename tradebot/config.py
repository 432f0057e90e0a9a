"""Parsing and checking of the environment, kept apart from settings.py so it can be tested.

Every error here names the environment variable at fault: a malformed URL must
not surface as a traceback from deep inside a database or broker driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

SUPPORTED_DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
SUPPORTED_BROKER_SCHEMES = {"redis", "rediss", "filesystem", "memory"}
SQLITE_BUSY_TIMEOUT_SECONDS = 20
DEFAULT_SECRET_PREFIXES = ("dev-insecure-", "django-insecure-", "change-me", "changeme")
# The only environments that may run without a SECRET_KEY (on the public development key).
KEYLESS_ENVIRONMENTS = frozenset({"development", "test"})


class SettingError(ImproperlyConfigured):
    """A setting from the environment is missing or malformed; the message names it."""


def database_from_env(env: environ.Env, *, default_sqlite: Path) -> dict[str, Any]:
    raw = env.str("DATABASE_URL", default="")
    if not raw:
        return sqlite_database(default_sqlite)
    url = _checked_url("DATABASE_URL", raw, SUPPORTED_DATABASE_SCHEMES)
    if url.scheme == "sqlite":
        return sqlite_database(Path(url.path or str(default_sqlite)))
    if not url.hostname and not url.path.strip("/"):
        raise SettingError(f"DATABASE_URL={_redact(raw)!r} names no host and no database.")
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # environ raises several types for bad URLs
        raise SettingError(f"DATABASE_URL is malformed ({exc}): {_redact(raw)!r}") from exc
    config["ENGINE"] = "django.db.backends.postgresql"
    config["CONN_MAX_AGE"] = 60
    config["CONN_HEALTH_CHECKS"] = True
    config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
    return config


def sqlite_database(path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets the web process read while a worker writes; the busy
            # timeout makes a writer wait for the lock instead of failing at once.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
        },
    }


def broker_transport_options(broker_url: str, *, folder: Path) -> dict[str, Any]:
    url = _checked_url("CELERY_BROKER_URL", broker_url, SUPPORTED_BROKER_SCHEMES)
    if url.scheme == "filesystem":
        from tradebot.broker import folder_options

        return folder_options(folder)
    if url.scheme in {"redis", "rediss"}:
        from tradebot.queues import broker_visibility_timeout

        return {"visibility_timeout": broker_visibility_timeout()}
    return {}


def broker_transport(broker_url: str) -> str | None:
    """The transport class for a broker URL: the atomic filesystem one for ``filesystem://``."""
    if urlsplit(broker_url).scheme == "filesystem":
        from tradebot.broker import TRANSPORT_PATH

        return TRANSPORT_PATH
    return None


def require_production_safety(
    *, environment: str, debug: bool, secret_key: str, allowed_hosts: list[str]
) -> None:
    """Refuse to start a production process with a setting that would make it unsafe."""
    if environment not in {"development", "staging", "production", "test"}:
        raise SettingError(
            f"ENVIRONMENT={environment!r} is not one of development, staging, production, test."
        )
    if environment in KEYLESS_ENVIRONMENTS:
        return
    # Staging holds real users and signs real sessions too: no public development key there.
    if not secret_key:
        raise SettingError(
            f"SECRET_KEY is missing with ENVIRONMENT={environment}: only development and "
            "test may run on the built-in development key."
        )
    if secret_key.startswith(DEFAULT_SECRET_PREFIXES) or len(set(secret_key)) < 5:
        raise SettingError("SECRET_KEY is a default or placeholder value: generate a real one.")
    if environment != "production":
        return
    if debug:
        raise SettingError("DEBUG is on with ENVIRONMENT=production: set DEBUG=false.")
    if len(secret_key) < 50:
        raise SettingError("SECRET_KEY is shorter than 50 characters: generate a real one.")
    if not allowed_hosts or "*" in allowed_hosts:
        raise SettingError("ALLOWED_HOSTS must list the production host names, not '*'.")


def _checked_url(variable: str, raw: str, schemes: set[str]):
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 -- raises ValueError on a non-numeric port
    except ValueError as exc:
        raise SettingError(f"{variable} is malformed ({exc}): {_redact(raw)!r}") from exc
    if url.scheme not in schemes:
        raise SettingError(
            f"{variable}={_redact(raw)!r} has scheme {url.scheme!r}; "
            f"expected one of {', '.join(sorted(schemes))}."
        )
    return url


def _redact(raw: str) -> str:
    """Hide a password in a URL before it goes into an error message."""
    try:
        url = urlsplit(raw)
    except ValueError:
        return "<unparseable>"
    if url.password:
        return raw.replace(f":{url.password}@", ":***@")
    return raw
