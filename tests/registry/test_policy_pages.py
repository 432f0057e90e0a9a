"""Every decision shows the policy it was made under (issue 25): approve page and mail."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.urls import reverse

from models_registry.approval_mails import notify_approvers_awaiting
from models_registry.models import ModelState, ValidationRun
from tests.registry.test_admin_permissions import csrf_client
from tests.support.policy import policy_set

# The example: a run that loses to buy-and-hold, passed only under loosened gates.
LOSING = {
    "total_return": -0.039,
    "sharpe": -0.4,
    "dsr": 0.08,
    "psr": 0.1,
    "max_drawdown": 0.12,
    "n_trades": 14,
    "n_bars": 24 * 90,
    "exposure": 0.4,
    "baselines": {"always_flat": {"total_return": 0.0}},
}
LOOSE = {
    "gates.validation.min_dsr": None,
    "gates.validation.total_return_above": None,
    "gates.validation.beats_buy_and_hold_by": None,
    "gates.validation.beats_always_flat_by": None,
}


def staged_under_a_loose_policy(version_factory: Any) -> Any:
    policy = policy_set(LOOSE, label="loose")
    staged = version_factory(ModelState.PAPER_TESTED)
    ValidationRun.objects.filter(model_version=staged).update(
        policy=policy,
        policy_hash=policy.content_hash,
        metrics=LOSING,
        benchmark_metrics={"total_return": 0.476},
    )
    return staged


@pytest.mark.django_db
def test_the_approve_page_lists_the_loosened_gates_and_the_default_verdict_in_red(
    approver: Any, version_factory: Any
) -> None:
    staged = staged_under_a_loose_policy(version_factory)
    client, _ = csrf_client(approver)
    url = reverse("admin:models_registry_version_action", args=[staged.pk, "approve_versions"])
    text = client.get(url).text

    assert "Judged under <strong>&quot;loose&quot; v2" in text
    assert "Looser than the shipped defaults" in text
    # One text for a loosened gate and one for the default verdict, the verdict block's.
    for gate in ("deflated Sharpe ratio", "return above buy-and-hold&#x27;s", "return after costs"):
        assert f"{gate} gate switched off (shipped: " in text
    assert (
        "the default policy would refuse it (it passed only under a loosened policy): returned "
        "-3.90 % while buy-and-hold made 47.60 %; deflated Sharpe ratio (DSR) 8.00 %, below the "
        "95.00 % needed" in text
    )


@pytest.mark.django_db
def test_under_the_shipped_policy_the_approve_page_lists_nothing_in_red(
    approver: Any, version_factory: Any
) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    client, _ = csrf_client(approver)
    url = reverse("admin:models_registry_version_action", args=[staged.pk, "approve_versions"])
    text = client.get(url).text
    assert "policy-in-force" in text
    assert "Looser than the shipped defaults" not in text


@pytest.mark.django_db
def test_the_approval_mail_names_the_policy_and_what_it_loosens(
    approver: Any, version_factory: Any
) -> None:
    staged = staged_under_a_loose_policy(version_factory)
    mail.outbox.clear()
    assert notify_approvers_awaiting(staged.pk) >= 1
    body = mail.outbox[-1].body
    assert 'Policy: "loose" v2' in body
    assert (
        "LOOSER than the shipped defaults: deflated Sharpe ratio gate switched off "
        "(shipped: 95.00 %)" in body
    )
    assert "the default policy would refuse it" in body
    assert "returned -3.90 % while buy-and-hold made 47.60 %" in body
    assert body.count("deflated Sharpe ratio gate switched") == 1  # one policy paragraph
    assert body.count("returned -3.90 % while buy-and-hold") == 1  # said once, not in warnings too


@pytest.mark.django_db
def test_a_policy_that_judges_on_one_window_is_shown_as_looser_on_the_approve_page(
    approver: Any, version_factory: Any
) -> None:
    """The shipped policy judges on re-fitted folds (#28): one window has less power."""
    policy = policy_set({"refit_folds": 0}, label="one window")
    staged = version_factory(ModelState.PAPER_TESTED)
    ValidationRun.objects.filter(model_version=staged).update(
        policy=policy, policy_hash=policy.content_hash
    )
    client, _ = csrf_client(approver)
    url = reverse("admin:models_registry_version_action", args=[staged.pk, "approve_versions"])
    text = client.get(url).text
    assert "Looser than the shipped defaults" in text
    assert (
        "judged on one 90-day window (shipped: 3 re-fitted walk-forward folds of 290 days)" in text
    )
