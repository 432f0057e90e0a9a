"""The approve page of a version judged under the demo's loosened policy, in a real browser at
1366 px: the policy is said once, inside the verdict block, with each loosened gate in red, the
shipped defaults' verdict in words, the leakage warning, and the power of the evidence.
Screenshot: test-artifacts/e2e/approve-demo-policy.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models_registry import roles
from models_registry.management.commands.run_demo import DEMO_GATES
from models_registry.models import (
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    ValidationRun,
)
from tests.e2e.test_admin_lifecycle import PASSWORD, SCREENSHOTS
from tests.e2e.test_widths_and_verdicts import (
    HOLD,
    LOSING,
    WIDTH,
    Visitor,
    _action,
    _judge,
    _version,
)
from tests.registry.conftest import VersionFactory, make_user
from tests.support.policy import gates_dotted, policy_set

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Too good to be true on one axis: a drawdown far below the policy's floor for its exposure.
LEAKY_LOSING = {**LOSING, "exposure": 0.9, "max_drawdown": 0.0005}


@pytest.fixture
def demo_judged(tmp_path: Path, settings: Any) -> ModelVersion:
    settings.MEDIA_ROOT = tmp_path / "media"
    engineer = make_user("erin", roles.ML_ENGINEER)
    approver = make_user("alice", roles.APPROVER)
    deployer = make_user("dora", roles.DEPLOYER)
    approver.set_password(PASSWORD)
    approver.save()
    # Two local targets: each its own install root (a host belongs to one target).
    staging, production = (
        DeploymentTarget.objects.create(
            name=f"{env}-local", environment=env, is_local=True, install_root=str(tmp_path / env)
        )
        for env in (Environment.STAGING, Environment.PRODUCTION)
    )
    factory = VersionFactory(tmp_path, engineer, approver, deployer, staging, production)
    staged = factory(ModelState.PAPER_TESTED)
    _judge(staged, LEAKY_LOSING, DEMO_GATES["validation"], settings.MEDIA_ROOT, "demo")
    # The demo's gates as the demo sets them: a named policy through the four-eyes change.
    demo = policy_set(gates_dotted(DEMO_GATES), label="demo")
    ValidationRun.objects.filter(model_version=staged).update(
        policy=demo, policy_hash=demo.content_hash, benchmark_metrics=HOLD
    )
    return staged


def test_the_approve_page_says_the_policy_once_inside_the_verdict(
    live_server: Any, browser: Any, demo_judged: ModelVersion
) -> None:
    visitor = Visitor(browser, live_server.url, "alice")
    page = visitor.page
    page.goto(_action(demo_judged, "approve_versions"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "approve-demo-policy.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH

    body = page.inner_text("body")
    verdict = page.inner_text("#verdict")
    # Said once on the page, and inside the verdict block.
    assert body.count("Policy the evidence was judged under") == 1
    assert body.count("Power of the evidence") == 1
    assert "Power of the evidence" in verdict
    assert 'Judged under "demo" v' in verdict and "sha256" in verdict
    # Each loosened gate in red.
    loosened = page.locator("#verdict ul.policy-loosened li").all_inner_texts()
    assert "deflated Sharpe ratio gate switched off (shipped: 95.00 %)" in loosened
    colour = page.eval_on_selector("#verdict ul.policy-loosened", "e => getComputedStyle(e).color")
    assert colour == "rgb(220, 53, 69)"
    # What the shipped defaults say, in words, once.
    assert "the default policy would refuse it (it passed only under a loosened policy)" in verdict
    assert body.count("returned -3.87 % while buy-and-hold made 47.60 %") == 1
    # The leakage warning is in the warnings list, in red, once.
    warnings = page.locator("#verdict .warning-list li").all_inner_texts()
    assert any("check for leakage" in w for w in warnings), warnings
    assert body.count("check for leakage") == 1
    assert "No warnings" not in body
    # The version page and the reject page say it once too, inside the verdict block.
    for path in (_version(demo_judged), _action(demo_judged, "reject_versions")):
        page.goto(path)
        body = page.inner_text("body")
        assert body.count("Policy the evidence was judged under") == 1, path
        assert body.count("Power of the evidence") == 1, path
        assert "Policy the evidence was judged under" in page.inner_text("#verdict"), path
    visitor.context.close()
