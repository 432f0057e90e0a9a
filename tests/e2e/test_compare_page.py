"""End to end in a real browser: an engineer compares two versions on one common window.

Runs after test_admin_lifecycle.py (which empties test-artifacts/e2e/ first) and adds the
Compare page's screenshot there. The comparison backtests are real; this test plays the
backtest worker itself (the lifecycle test already proves a real worker runs them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models_registry import roles
from models_registry.models import ModelState, ModelVersion, ValidationRun
from models_registry.services.model_versions import model_version_create
from models_registry.tasks.backtest import run_validation
from tests.e2e.test_admin_lifecycle import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    SCREENSHOTS,
    Session,
    browser,
    ensure_role_permissions,
    model_dir,
    person,
    store,
)
from tests.registry.test_admin_compare import later_copy
from tests.support.policy import ONE_WINDOW

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_engineer_compares_two_versions_on_one_window_in_the_browser(
    live_server: Any,
    browser: Any,  # noqa: F811
    store: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.MEDIA_ROOT, settings.TRADEBOT_DATA_DIR = tmp_path / "media", store
    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = {"days": 30, **ONE_WINDOW}
    ensure_role_permissions()
    engineer = person("erin", roles.ML_ENGINEER)
    first = model_version_create(source_dir=model_dir, created_by=engineer)
    later = model_version_create(source_dir=later_copy(model_dir, tmp_path), created_by=engineer)
    erin = Session(browser, live_server.url, "erin")
    try:
        page = erin.page
        page.goto("/admin/models_registry/modelversion/")
        for version in (first, later):
            page.check(f"input.action-select[value='{version.pk}']")
        page.select_option("select[name=action]", "compare_versions")
        with page.expect_navigation():
            page.click("button[name=index]")
        assert "No finished run on this window yet" in page.inner_text("#content-main")
        erin.submit()  # "Run 2 comparison backtests"
        assert "comparison runs queued" in erin.messages()
        assert "Pending:" in page.inner_text("#content-main")
        erin.shot("compare-pending")

        for run in ValidationRun.objects.filter(status="queued").order_by("pk"):
            run_validation.apply(args=[run.pk], task_id=run.task_id).get()
        page.reload()

        text = page.inner_text("#content-main")
        assert "Every figure below is from one window" in text and "Pending:" not in text
        labels = [
            line.get_attribute("data-label")
            for line in page.query_selector_all("svg.equity-chart polyline.curve")
        ]
        assert len(labels) == 3 and labels[-1] == "buy and hold (same bars)"
        assert {label.split(" (run")[0] for label in labels[:2]} == {str(first), str(later)}
        assert page.query_selector_all("table.compare-parameters tr.differs")
        erin.shot("compare")
        assert (SCREENSHOTS / "compare.png").stat().st_size > 10_000
        for version in (first, later):
            assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED
    finally:
        erin.close()
