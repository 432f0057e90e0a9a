"""End to end in a real browser: three people take a version to production; an auditor reads it.

Headless Chromium (Debian's) driven by Playwright against the live admin, with a
real Celery worker running the validation backtest and the deployment to a
local production target whose service is the real engine. Screenshots of each
page are saved under test-artifacts/e2e/.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from models_registry import roles
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
    ValidationRun,
)
from models_registry.services import lifecycle
from models_registry.services.local_targets import local_target_ensure
from models_registry.services.model_versions import model_version_create
from tests.conftest import PROJECT_ROOT
from tests.registry.conftest import (
    finished_deployment,
    passing_forward_run,
    passing_paper_run,
)
from tests.support.gates import loose_validation
from tests.support.policy import ONE_WINDOW
from tests.support.tiny_world import build_btc_store, tiny_full_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "e2e"
PASSWORD = "e2e-pass-Quartz-91"
GENEROUS_GATES = {
    "validation": loose_validation(min_sharpe=-100.0, max_drawdown=1.0, min_trades=0, min_bars=24),
    "paper": {"min_bars": 24, "max_drawdown": 1.0, "max_divergence": 1.0},
}
STORE_ROWS = 600 + 24 * 60


@pytest.fixture(scope="module")
def store(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e_store")
    return build_btc_store(shared_data_dir, folder, start="2024-01-01 00:00", rows=STORE_ROWS)


@pytest.fixture(scope="module")
def model_dir(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_full_model(shared_data_dir, tmp_path_factory)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the
    # test makes between page steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield launched
        launched.close()


def person(username: str, role: str) -> Any:
    user = get_user_model().objects.create_user(
        username, f"{username}@example.test", PASSWORD, is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def ensure_role_permissions() -> None:
    # A transactional test's flush empties the groups the migration made; make them again.
    from django.contrib.auth.models import Permission

    for role, codenames in roles.ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label="models_registry", codename__in=codenames
            )
        )


class Session:
    """One person's browser context, logged in to the admin."""

    def __init__(self, browser: Any, base_url: str, username: str) -> None:
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1400, "height": 1000}
        )
        self.page = self.context.new_page()
        self.username = username
        self.page.goto("/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        with self.page.expect_navigation():
            self.page.click("input[type=submit]")
        self.page.wait_for_selector("#user-tools")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def run_action(self, version: ModelVersion, action: str) -> None:
        self.page.goto("/admin/models_registry/modelversion/")
        self.page.check(f"input.action-select[value='{version.pk}']")
        self.page.select_option("select[name=action]", action)
        with self.page.expect_navigation():
            self.page.click("button[name=index]")

    def open_version(self, version: ModelVersion) -> str:
        """The version page; returns the cockpit banner's text."""
        self.page.goto(f"/admin/models_registry/modelversion/{version.pk}/change/")
        return self.page.inner_text("#cockpit")

    def buttons(self) -> set[str]:
        return {
            a.get_attribute("data-action") or ""
            for a in self.page.query_selector_all("#cockpit a[data-action]")
        }

    def press(self, action: str) -> None:
        with self.page.expect_navigation():
            self.page.click(f"#cockpit a[data-action='{action}']")

    def submit(self) -> None:
        with self.page.expect_navigation():
            self.page.click("input[type=submit].default")

    def messages(self) -> str:
        return (
            self.page.inner_text("ul.messagelist")
            if self.page.query_selector("ul.messagelist")
            else ""
        )

    def close(self) -> None:
        self.context.close()


def wait_for(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_three_people_take_a_version_to_production_and_an_auditor_reads_it(
    live_server: Any,
    browser: Any,
    store: Path,
    model_dir: Path,
    tmp_path: Path,
    settings: Any,
    celery_worker_factory: Any,
) -> None:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    media = tmp_path / "media"
    settings.MEDIA_ROOT, settings.TRADEBOT_DATA_DIR = media, store
    settings.TRADEBOT_GATES = GENEROUS_GATES
    # The store holds months, not the shipped folds' three years: one window, shown as looser.
    settings.TRADEBOT_VALIDATION_POLICY = ONE_WINDOW
    worker = celery_worker_factory(
        queues="backtest,deploy",
        env={"MEDIA_ROOT": str(media), "TRADEBOT_DATA_DIR": str(store),
             "TRADEBOT_GATES": json.dumps(GENEROUS_GATES),
             "TRADEBOT_VALIDATION_POLICY": json.dumps(ONE_WINDOW)},
    )  # fmt: skip
    ensure_role_permissions()
    engineer = person("erin", roles.ML_ENGINEER)
    person("alice", roles.APPROVER)
    person("dora", roles.DEPLOYER)
    person("otto", roles.AUDITOR)
    version = model_version_create(source_dir=model_dir, created_by=engineer)
    # A provisioned host: the install root and its model folder exist before the first deploy.
    (tmp_path / "host" / "opt" / "src" / "ml").mkdir(parents=True)
    production = local_target_ensure(
        name="prod-local",
        environment=Environment.PRODUCTION,
        install_root=tmp_path / "host" / "opt",
        replay_from="2024-02-20",
        data_dir=store,
    )
    try:
        # 1. The ML engineer validates the version through its page's button.
        erin = Session(browser, live_server.url, "erin")
        banner = erin.open_version(version)
        assert "Trained" in banner and "validates it on out-of-sample data" in banner
        assert erin.buttons() == {"validate_versions"}
        erin.press("validate_versions")
        erin.shot("1-engineer-validate-page")
        erin.submit()
        assert "validation run" in erin.messages() and "queued" in erin.messages()
        wait_for(
            lambda: ModelVersion.objects.get(pk=version.pk).state == ModelState.VALIDATED,
            f"the validation run to pass (worker log: {worker.log_path})",
        )
        run = ValidationRun.objects.get(model_version=version)
        erin.open_version(version)
        assert "Validation runs" in erin.page.inner_text("#validation-runs")
        assert "passed" in erin.page.inner_text("#validation-runs")
        assert " %" in erin.page.inner_text("#validation-runs")  # returns read as percentages
        assert "approve_versions" not in erin.buttons()
        erin.shot("1-engineer-version-validated")
        erin.close()
        assert run.passed

        # The replay, staging and the forward paper run there are covered by their own
        # tests (tests/deployment/test_forward_paper_run.py); here they are recorded.
        passing_paper_run(version)
        staging = production.__class__.objects.create(
            name="staging-local", environment=Environment.STAGING, is_local=True
        )
        staged_by = finished_deployment(version, staging, engineer)
        lifecycle.model_version_stage(model_version=version, deployment=staged_by, actor=engineer)
        lifecycle.model_version_mark_paper_tested(
            model_version=version,
            paper_run=passing_forward_run(version, staged_by),
            actor=engineer,
        )

        # 2. The approver reads the evidence on the approve page and approves.
        alice = Session(browser, live_server.url, "alice")
        banner = alice.open_version(version)
        assert "waits for approval by someone other than erin" in banner
        assert alice.buttons() == {"approve_versions", "reject_versions"}
        alice.press("reject_versions")
        alice.page.wait_for_selector("textarea[name=comment]")
        alice.shot("2-approver-reject-page")
        alice.open_version(version)
        alice.press("approve_versions")
        alice.page.wait_for_selector("textarea[name=comment]")
        evidence = alice.page.inner_text(".confirm-action")
        assert version.onnx_sha256 in evidence
        assert f"validation run #{run.pk}" in evidence and "paper run #" in evidence
        assert "Gates" in evidence and "Targets and hosts" in evidence
        assert "prod-local" in evidence and "Against what runs on production now" in evidence
        alice.shot("2-approver-approve-page")
        alice.page.fill("textarea[name=comment]", "Backtest and staging reviewed.")
        alice.submit()
        assert f"{version}: approved" in alice.messages()
        assert alice.buttons() == {"reject_versions"}  # approved: only a rejection is left
        alice.shot("3-approver-approved")
        alice.close()
        assert ModelVersion.objects.get(pk=version.pk).state == ModelState.APPROVED

        # 3. The deployer deploys from the version page; the worker runs it.
        dora = Session(browser, live_server.url, "dora")
        assert "deploys it to a production target" in dora.open_version(version)
        assert dora.buttons() == {"deploy_versions"}
        dora.press("deploy_versions")
        dora.page.wait_for_selector("select[name=target]")
        confirmation = dora.page.inner_text(".confirm-action")
        assert "prod-local" in confirmation and version.onnx_sha256 in confirmation
        dora.shot("4-deployer-deploy-page")
        dora.page.select_option("select[name=target]", str(production.pk))
        dora.submit()
        assert "deployment #" in dora.messages()
        wait_for(
            lambda: Deployment.objects.filter(
                target=production, status__in=[s for s in DeploymentStatus.values
                                               if s not in ("queued", "running")]
            ).exists(),
            f"the deployment to finish (worker log: {worker.log_path})",
            timeout=180,
        )  # fmt: skip
        deployment = Deployment.objects.get(target=production)
        assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.error
        assert ModelVersion.objects.get(pk=version.pk).state == ModelState.IN_PRODUCTION
        assert "prod-local" in dora.open_version(version)
        assert dora.buttons() == {"deploy_versions", "rollback_production"}
        dora.press("rollback_production")
        preview = dora.page.inner_text(".rollback-preview")
        # The first version on the target: the page says there is nothing to restore, and why.
        assert (
            "prod-local" in preview and f"no version ran on prod-local before {version}" in preview
        )
        dora.shot("5-deployer-rollback-page")
        dora.page.goto(f"/admin/models_registry/deployment/{deployment.pk}/change/")
        assert "health_check" in dora.page.inner_text("body")
        dora.shot("5-deployer-deployment")
        dora.close()

        # 4. The auditor finds the deployment in the history and no way to change anything.
        otto = Session(browser, live_server.url, "otto")
        otto.page.goto("/admin/models_registry/deployment/")
        history = otto.page.inner_text("#result_list")
        assert "prod-local" in history and "alice" in history and "dora" in history
        otto.shot("6-auditor-deployment-history")
        otto.page.goto(f"/admin/models_registry/deployment/{deployment.pk}/change/")
        assert otto.page.query_selector("input[name=_save]") is None
        assert otto.page.query_selector("a.deletelink") is None
        banner = otto.open_version(version)
        assert otto.page.query_selector("input[name=_save]") is None
        # Where the approve button would be: the cockpit shows the auditor no action at all.
        assert otto.page.query_selector("#cockpit") is not None
        assert otto.buttons() == set()
        assert "No action of yours applies" in banner
        otto.page.goto("/admin/models_registry/auditevent/verify/")
        assert "Intact" in otto.page.inner_text("#content-main")
        otto.shot("7-auditor-audit-chain")
        response = otto.page.goto("/admin/models_registry/modelversion/add/")
        assert response is not None and response.status == 403
        otto.close()
    finally:
        from deployment.local_service import stop

        stop(tmp_path / "host" / "opt")
