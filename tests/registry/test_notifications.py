"""Approvers hear when a version awaits them; the requester hears the decision."""

from __future__ import annotations

from typing import Any

import pytest

from models_registry import selectors
from models_registry.models import ModelState
from models_registry.services import lifecycle
from tests.registry.conftest import passing_forward_run

pytestmark = pytest.mark.django_db


def test_a_passing_forward_run_mails_the_approvers_but_not_the_requester(
    version_factory: Any,
    engineer: Any,
    approver: Any,
    second_approver: Any,
    deployer: Any,
    staging_target: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    version = version_factory(ModelState.STAGED)
    deployment = selectors.successful_staging_deployment(version)
    assert deployment is not None and mailoutbox == []  # staging alone asks no one yet
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.model_version_mark_paper_tested(
            model_version=version,
            paper_run=passing_forward_run(version, deployment),
            actor=engineer,
        )
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == sorted([approver.email, second_approver.email])
    assert str(version) in mail.subject
    assert version.onnx_sha256 in mail.body
    assert engineer.username in mail.body


def test_no_mail_before_the_transaction_commits(
    version_factory: Any, engineer: Any, staging_target: Any, mailoutbox: list[Any]
) -> None:
    version = version_factory(ModelState.STAGED)
    deployment = selectors.successful_staging_deployment(version)
    assert deployment is not None
    lifecycle.model_version_mark_paper_tested(
        model_version=version, paper_run=passing_forward_run(version, deployment), actor=engineer
    )
    assert mailoutbox == []  # the test transaction never commits


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_mails_the_requester(
    version_factory: Any,
    engineer: Any,
    approver: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
    decision: str,
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    with django_capture_on_commit_callbacks(execute=True):
        if decision == "approve":
            lifecycle.model_version_approve(
                model_version=version, approved_by=approver, comment="fine by me"
            )
        else:
            lifecycle.model_version_reject(
                model_version=version, rejected_by=approver, comment="leaky features"
            )
    assert [m.to for m in mailoutbox] == [[engineer.email]]
    expected = "approved" if decision == "approve" else "rejected"
    assert f"was {expected}" in mailoutbox[0].subject
    assert approver.username in mailoutbox[0].body
