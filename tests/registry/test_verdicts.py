"""Decision pages lead with the verdict under the shipped default gates, and never reassure
about a run that loses to buy-and-hold or production, trades too little, or passed only
under a loosened policy."""

from __future__ import annotations

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models_registry import verdicts
from models_registry.gates import DEFAULT_GATES
from models_registry.management.commands.run_demo import DEMO_GATES
from models_registry.models import ModelState, PaperTradingRun, RunStatus, ValidationRun
from tests.registry.test_admin_permissions import csrf_client

CHANGE = "admin:models_registry_modelversion_change"
ACTION = "admin:models_registry_version_action"

# The figures of the demo version: -3.87 % against buy-and-hold's +47.6 %, DSR 8 %.
LOSING = {
    "total_return": -0.0387, "sharpe": -0.2, "dsr": 0.08, "psr": 0.1, "max_drawdown": 0.12,
    "n_trades": 14, "trades": 14, "n_bars": 2160, "bars": 2160, "sample_status": "out_of_sample",
    "baselines": {"always_flat": {"total_return": 0.0}},
}  # fmt: skip
WINNING = {**LOSING, "total_return": 0.62, "sharpe": 2.1, "dsr": 0.97, "psr": 0.99}
HOLD = {"total_return": 0.476}


def _judge(version, metrics, gates, *, passed=True) -> ValidationRun:
    run = version.validation_runs.get()
    ValidationRun.objects.filter(pk=run.pk).update(
        metrics=metrics, benchmark_metrics=HOLD, config={"gates": gates}, passed=passed
    )
    PaperTradingRun.objects.filter(model_version=version).update(
        bars=24 * 15,
        trades=5,
        metrics={"max_drawdown": 0.05},
        divergence={"equity_relative": 0.001},
        gate_results=[
            {"name": name, "passed": True, "threshold": threshold}
            for name, threshold in DEFAULT_GATES["paper"].items()
        ],
    )
    run.refresh_from_db()
    return run


def verdict_html(page: str) -> str:
    return page.split('id="verdict"', 1)[1].split('class="verdict-chart"', 1)[0]


@pytest.mark.django_db
def test_the_demo_version_s_approve_page_says_it_fails_the_shipped_gates_first(
    approver, version_factory
) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    _judge(staged, LOSING, DEMO_GATES["validation"])
    client, _ = csrf_client(approver)
    page = client.get(reverse(ACTION, args=[staged.pk, "approve_versions"])).text
    block = verdict_html(page)
    # The verdict comes before the quantiles, runs and gates, which fold below.
    assert page.index('id="verdict"') < page.index("<details")
    assert "does NOT pass the shipped default gates" in block
    assert "returned -3.87 % while buy-and-hold made 47.60 %" in block
    assert "passed only under a loosened policy" in block
    assert "deflated Sharpe ratio gate switched off (shipped: 95.00 %)" in block
    assert "No warnings" not in page


@pytest.mark.django_db
def test_a_version_passing_the_shipped_gates_says_so_without_warnings(
    approver, version_factory
) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    _judge(staged, WINNING, dict(DEFAULT_GATES["validation"]))
    client, _ = csrf_client(approver)
    block = verdict_html(client.get(reverse(ACTION, args=[staged.pk, "approve_versions"])).text)
    assert "its evidence passes the shipped default gates" in block
    assert "the shipped defaults" in block and "loosens" not in block
    assert "No warnings" in block, block.split("Warnings</h3>")[1][:600]


@pytest.mark.django_db
def test_losing_to_production_on_the_same_window_is_a_warning(approver, version_factory) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    staged = version_factory(ModelState.PAPER_TESTED)
    _judge(live, {**WINNING, "total_return": 0.9}, dict(DEFAULT_GATES["validation"]))
    _judge(staged, WINNING, dict(DEFAULT_GATES["validation"]))
    client, _ = csrf_client(approver)
    block = verdict_html(client.get(reverse(CHANGE, args=[staged.pk])).text)
    assert f"less than the 90.00 % of {live}" in block
    assert "No warnings" not in block


@pytest.mark.django_db
def test_the_production_version_s_page_does_not_say_nothing_runs_in_production(
    deployer, version_factory
) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    client, _ = csrf_client(deployer)
    page = client.get(reverse(CHANGE, args=[live.pk])).text
    assert "No BTCUSDT version runs on a production target now" not in page
    assert f"{live} is the version production runs now" in page


# --- the class: every losing, thin or loosened run warns -------------------------------


def _unsaved_run(metrics, gates, passed) -> ValidationRun:
    return ValidationRun(
        pk=1, status=RunStatus.PASSED if passed else RunStatus.FAILED, passed=passed,
        metrics=metrics, benchmark_metrics=HOLD, config={"gates": gates},
    )  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    total_return=st.floats(-0.9, 2.0),
    hold=st.floats(-0.9, 2.0),
    trades=st.integers(0, 50),
    dsr=st.floats(0.0, 1.0),
    loosen=st.sampled_from(sorted(DEFAULT_GATES["validation"])),
)
def test_warnings_are_never_empty_for_a_losing_thin_or_loosened_run(
    total_return, hold, trades, dsr, loosen
) -> None:
    metrics = {**WINNING, "total_return": total_return, "n_trades": trades, "dsr": dsr}
    gates = {**DEFAULT_GATES["validation"], loosen: None}
    run = _unsaved_run(metrics, gates, passed=True)
    run.benchmark_metrics = {"total_return": hold}
    verdict = verdicts.verdict_under_defaults(run)
    warnings = verdicts.verdict_warnings([verdict], run, None)
    loses = total_return <= hold or total_return <= 0 or trades < 3 or dsr < 0.95
    assert verdict.policy.loosened  # a switched-off gate is always named
    if loses:
        assert warnings, (metrics, gates)
        assert not verdict.passes_defaults
    else:
        assert verdict.passes_defaults and not warnings


def test_thresholds_read_as_people_read_them() -> None:
    assert verdicts.threshold_text("min_bars", 1440.0) == "1,440"
    assert verdicts.threshold_text("max_drawdown", 0.35) == "35.00 %"
    assert verdicts.threshold_text("min_dsr", None) == "off"


def test_the_approval_mail_says_the_verdict_in_words_with_a_link(
    version_factory, engineer, approver, staging_target, mailoutbox,
    django_capture_on_commit_callbacks, settings,
) -> None:  # fmt: skip
    from models_registry import selectors
    from models_registry.services import lifecycle
    from tests.registry.conftest import passing_forward_run

    settings.TRADEBOT_ADMIN_URL = "https://tradebot.example/admin/"
    version = version_factory(ModelState.STAGED)
    _judge(version, LOSING, DEMO_GATES["validation"])
    deployment = selectors.successful_staging_deployment(version)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.model_version_mark_paper_tested(
            model_version=version, paper_run=passing_forward_run(version, deployment),
            actor=engineer,
        )  # fmt: skip
    body = mailoutbox[0].body
    assert "passed validation" not in body
    assert "does NOT pass" in body and "passed only under a loosened policy" in body
    assert "returned -3.87 % while buy-and-hold made 47.60 %" in body
    assert (
        f"https://tradebot.example/admin/models_registry/modelversion/{version.pk}/change/" in body
    )


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    "model", ["modelversion", "validationrun", "deployment", "deploymenttarget", "auditevent"]
)
def test_a_malformed_id_in_an_admin_url_is_a_404(superuser, settings, debug, model) -> None:
    settings.DEBUG = debug
    client, _ = csrf_client(superuser)
    for bad in ("abc", "1.5", "-", "%20"):
        response = client.get(f"/admin/models_registry/{model}/{bad}/change/")
        assert response.status_code == 404, (model, bad, response.status_code)


def test_a_suspension_reason_reads_numbers_as_people_do() -> None:
    from models_registry.services.monitoring import _failed_gate_text

    text = _failed_gate_text({"name": "max_sharpe_drop", "value": 1.743301511595308,
                              "threshold": 1.0})  # fmt: skip
    assert text == "max_sharpe_drop: 1.74 (limit 1.00)"
    assert _failed_gate_text({"name": "min_bars", "value": 1439.0, "threshold": 1440.0}) == (
        "min_bars: 1,439 (limit 1,440)"
    )


def test_a_paper_run_judged_under_the_demo_s_paper_gates_warns() -> None:
    run = PaperTradingRun(
        pk=7, status=RunStatus.PASSED, passed=True, bars=200, trades=4,
        metrics={"max_drawdown": 0.05}, divergence={"equity_relative": 0.001},
        gate_results=[{"name": n, "passed": True, "threshold": t}
                      for n, t in DEMO_GATES["paper"].items()],
    )  # fmt: skip
    verdict = verdicts.verdict_under_defaults(run)
    assert verdict.policy.loosened == [
        "bars judged: 168 (shipped: 336)",
        "worst loss (drawdown): 50.00 % (shipped: 35.00 %)",
    ]
    assert verdict.failures == ["judged on 200 bars, fewer than the 336 needed"]
    warnings = verdicts.verdict_warnings([verdict], None, None)
    assert warnings[0].startswith("paper run #7 passed only under a loosened policy")


def test_gate_tables_show_counts_whole_and_fractions_as_percentages() -> None:
    from models_registry import formatting

    html = formatting.key_value_table(
        [{"name": "min_bars", "value": 2160.0, "threshold": 1440.0, "passed": True},
         {"name": "max_drawdown", "value": 0.12, "threshold": 0.35, "passed": True}]
    )  # fmt: skip
    assert "1,440" in html and "2,160" in html and "1440.00" not in html
    assert "35.00 %" in html and "12.00 %" in html
