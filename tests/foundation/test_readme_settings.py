"""The README's production settings block, read the way systemd's EnvironmentFile reads it.

systemd keeps everything after the first ``=`` as the value (a trailing ``# comment``
included); only lines starting with ``#`` or ``;`` are comments. A copied block must mean
what its text says: every value is checked against what the README promises.
"""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

import environ
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "**3. Settings** in `/etc/tradebot/tradebot.env`"


def settings_block() -> str:
    text = README.read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    return re.search(r"```\n(.*?)```", after, re.S).group(1)


def systemd_environment_file(text: str) -> dict[str, str]:
    """systemd.exec(5) EnvironmentFile=: KEY=VALUE lines; # and ; start a comment line only;
    whitespace around the value is dropped; a value wholly in quotes loses them."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return systemd_environment_file(settings_block())


def test_comments_are_on_their_own_lines(values: dict[str, str]) -> None:
    assert values, "the README's settings block is empty"
    assert [k for k, v in values.items() if "#" in v] == []


def test_an_inline_comment_would_change_the_value() -> None:
    # The defect this guards against: systemd keeps the comment, and the flag reads false.
    parsed = systemd_environment_file("BEHIND_TLS_PROXY=true   # the proxy sets it\n")
    assert environ.Env().parse_value(parsed["BEHIND_TLS_PROXY"], bool) is False


def test_each_value_is_what_the_readme_says(values: dict[str, str]) -> None:
    env = environ.Env()
    read = values
    assert read["ENVIRONMENT"] == "production"
    assert env.parse_value(read["DEBUG"], bool) is False
    assert env.parse_value(read["BEHIND_TLS_PROXY"], bool) is True
    assert read["ALLOWED_HOSTS"] == "tradebot.example.org"
    assert read["CSRF_TRUSTED_ORIGINS"].startswith("https://")
    assert read["DATABASE_URL"].startswith("postgres://") and " " not in read["DATABASE_URL"]
    assert read["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert read["TRADEBOT_ADMIN_URL"].startswith("https://") and read[
        "TRADEBOT_ADMIN_URL"
    ].endswith("/admin/")
    module, _, name = read["EMAIL_BACKEND"].rpartition(".")
    assert hasattr(import_module(module), name), read["EMAIL_BACKEND"]
    for path_setting in ("TRADEBOT_VAR_DIR", "AUDIT_HMAC_KEY_FILE", "AUDIT_ANCHOR_FILE"):
        assert read[path_setting].startswith("/") and " " not in read[path_setting]
    # Placeholders say so, and the production checks refuse them until replaced.
    assert read["SECRET_KEY"] == "CHANGE-ME"


def test_the_audit_settings_are_the_names_the_code_reads(values: dict[str, str]) -> None:
    package = README.parents[0] / "models_registry" / "services" / "audit"
    source = "".join((package / name).read_text() for name in ("key.py", "anchors.py"))
    for name in ("AUDIT_HMAC_KEY_FILE", "AUDIT_ANCHOR_FILE"):
        assert name in values and f'"{name}"' in source
