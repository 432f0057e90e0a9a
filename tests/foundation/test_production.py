"""The control plane as production runs it: gunicorn, DEBUG=False, WhiteNoise, PostgreSQL, Redis.

`collectstatic` into a temporary folder, then real gunicorn with ENVIRONMENT=production,
then headless Chromium logs in and opens an admin page. The check is that the admin's
stylesheet was applied (a computed style), not only that the page answered 200.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT, database_url_for_subprocesses
from tests.foundation.test_settings import audit_witness_env
from tests.stack import free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
# Django admin's base.css: `#header { background: var(--header-bg) }`, --header-bg #417690.
ADMIN_HEADER_RGB = "rgb(65, 118, 144)"
PASSWORD = "a-long-production-test-password-9"


def production_env(tmp_path: Path, port: int) -> dict[str, str]:
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        pytest.fail("run under `python -m tests.stack` (PostgreSQL and Redis)")
    return {
        **os.environ,
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url_for_subprocesses(),
        "STATIC_ROOT": str(tmp_path / "static"),
        "TRADEBOT_VAR_DIR": str(tmp_path / "var"),
        # TLS ends at the reverse proxy in front of gunicorn, which says so in this header;
        # the test's browser sends it itself. Secure cookies and HSTS stay on.
        "BEHIND_TLS_PROXY": "true",
        "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
        # Production requires the audit key and an anchor sink (check --deploy, #26).
        **audit_witness_env(tmp_path),
    }


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = production_env(tmp_path, port)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "collectstatic", "--no-input", "-v0"], cwd=PROJECT_ROOT, env=env,
                   check=True)  # fmt: skip
    check = subprocess.run([*manage, "check", "--deploy", "--fail-level", "WARNING"],
                           cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "tradebot.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port, "gunicorn", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log.read_text()[-3000:])


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        context = browser.new_context(extra_http_headers={"X-Forwarded-Proto": "https"})
        yield context.new_page()
        browser.close()


def test_gunicorn_serves_the_styled_admin_with_production_settings(
    gunicorn: str, page: Any, django_user_model: Any
) -> None:
    django_user_model.objects.create_superuser("ops", "ops@example.com", PASSWORD)

    page.goto(f"{gunicorn}/admin/login/")
    stylesheet = page.locator("link[rel=stylesheet]").first.get_attribute("href")
    # The manifest storage's hashed name, so browsers may cache it for ever.
    assert re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", stylesheet), stylesheet
    assert _header_background(page) == ADMIN_HEADER_RGB

    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{gunicorn}/admin/")
    page.goto(f"{gunicorn}/admin/auth/user/")
    assert page.locator("#result_list").is_visible()
    assert _header_background(page) == ADMIN_HEADER_RGB
    # changelists.css is applied too: the filter sidebar's or the results table's rules.
    assert page.evaluate("getComputedStyle(document.querySelector('#changelist')).display") in {
        "flex",
        "block",
    }

    request = urllib.request.Request(
        f"{gunicorn}{stylesheet}", headers={"Accept-Encoding": "gzip", "X-Forwarded-Proto": "https"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "max-age=315360000" in response.headers["Cache-Control"]
        assert response.headers.get("Content-Encoding") in {"gzip", "br"}


def test_production_refuses_debug_on(tmp_path: Path) -> None:
    env = {**production_env(tmp_path, 1), "DEBUG": "true"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0
    assert "DEBUG is on with ENVIRONMENT=production" in result.stderr


def _header_background(page: Any) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
