"""Notices go to the role that can act, and every lifecycle event can go to a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from models_registry.models import AuditEvent, Deployment, DeploymentStatus, ModelState
from models_registry.services import deployments, notifications
from models_registry.services.monitoring import notify_approvers_degraded
from models_registry.tasks.webhook import send_webhook
from tests.fakes.http_fake import FakeHttpServer, FakeResponse, Fault
from tests.support.walk import create_in

pytestmark = pytest.mark.django_db


def running_deployment(version: Any, target: Any, deployer: Any) -> Deployment:
    return create_in(
        Deployment,
        DeploymentStatus.RUNNING,
        target=target,
        model_version=version,
        requested_by=deployer,
        sha256=version.onnx_sha256,
    )


@pytest.mark.parametrize(
    ("status", "needs_attention", "ends", "subject"),
    [
        (DeploymentStatus.FAILED, False, DeploymentStatus.FAILED, "Failed"),
        (DeploymentStatus.ROLLED_BACK, False, DeploymentStatus.ROLLED_BACK, "Rolled back"),
        (DeploymentStatus.ROLLED_BACK, True, DeploymentStatus.NEEDS_ATTENTION, "NEEDS ATTENTION"),
    ],
)
def test_an_unsuccessful_deployment_mails_the_deployers(
    version_factory: Any,
    approver: Any,
    deployer: Any,
    production_target: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
    status: str,
    needs_attention: bool,
    ends: str,
    subject: str,
) -> None:
    version = version_factory(ModelState.APPROVED)
    deployment = running_deployment(version, production_target, deployer)
    with django_capture_on_commit_callbacks(execute=True):
        finished = deployments.deployment_finish(
            deployment,
            status=status,
            reason="engine did not come back",
            needs_attention=needs_attention,
        )
    assert finished.status == ends
    assert [m.to for m in mailoutbox] == [[deployer.email]]  # not the approvers: they cannot act
    assert subject in mailoutbox[0].subject
    assert "engine did not come back" in mailoutbox[0].body
    finished_events = AuditEvent.objects.filter(
        event_type="deploy_finished", object_id=str(deployment.pk)
    )
    assert [e.data["new_status"] for e in finished_events] == [ends]


def test_a_successful_deployment_mails_nobody(
    version_factory: Any,
    deployer: Any,
    production_target: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    version = version_factory(ModelState.APPROVED)
    deployment = running_deployment(version, production_target, deployer)
    with django_capture_on_commit_callbacks(execute=True):
        finished = deployments.deployment_finish(deployment, status=DeploymentStatus.SUCCEEDED)
    assert finished.status == DeploymentStatus.SUCCEEDED
    # Same transaction: the version is in production as the deployment is recorded.
    assert (
        finished.model_version.__class__.objects.get(pk=version.pk).state
        == ModelState.IN_PRODUCTION
    )
    assert mailoutbox == []


def test_degraded_goes_to_approvers_and_deployers(
    version_factory: Any, approver: Any, deployer: Any, engineer: Any, mailoutbox: list[Any]
) -> None:
    version = version_factory(ModelState.APPROVED)
    assert notify_approvers_degraded(version.pk, 1, "sharpe dropped") == 1
    assert sorted(mailoutbox[0].to) == sorted([approver.email, deployer.email])
    assert engineer.email not in mailoutbox[0].to


# --- webhook ------------------------------------------------------------------------------


@pytest.fixture
def hook(settings: Any) -> Any:
    server = FakeHttpServer()
    server.add_route("POST", "/hook", lambda request: FakeResponse.json({"ok": True}))
    with server:
        settings.TRADEBOT_WEBHOOK_URL = server.url + "/hook"
        settings.TRADEBOT_WEBHOOK_SECRET = "s3cret-outside-the-db"
        yield server


def test_the_webhook_body_is_signed_and_a_failure_is_retried(
    version_factory: Any, deployer: Any, production_target: Any, hook: Any
) -> None:
    version = version_factory(ModelState.APPROVED)
    deployment = running_deployment(version, production_target, deployer)
    deployments.deployment_finish(deployment, status=DeploymentStatus.FAILED, reason="x")
    event = AuditEvent.objects.filter(event_type="deploy_finished").latest("id")
    hook.inject(Fault(response=FakeResponse(status=503, body="busy"), times=1))

    result = send_webhook.apply(args=[event.pk])

    assert result.successful(), result.traceback
    received = hook.requests_to("/hook")
    assert len(received) == 2, "the first answer was a 503: the task retried"
    body = received[-1].body
    expected = hmac.new(b"s3cret-outside-the-db", body, hashlib.sha256).hexdigest()
    signature = {k.lower(): v for k, v in received[-1].headers.items()}["x-tradebot-signature"]
    assert signature == f"sha256={expected}"
    assert hmac.new(b"a-wrong-key", body, hashlib.sha256).hexdigest() != expected
    sent = json.loads(body)
    assert sent["event_type"] == "deploy_finished" and sent["data"]["new_status"] == "failed"
    assert sent["row_hash"] == event.row_hash


def test_every_transition_queues_its_event_on_commit(
    version_factory: Any,
    deployer: Any,
    production_target: Any,
    hook: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(send_webhook, "delay", lambda event_id: queued.append(event_id))
    version = version_factory(ModelState.APPROVED)
    deployment = running_deployment(version, production_target, deployer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deployments.deployment_finish(deployment, status=DeploymentStatus.SUCCEEDED)
    assert queued == [], "nothing is sent before the commit"
    for callback in callbacks:
        callback()
    types = list(AuditEvent.objects.filter(pk__in=queued).values_list("event_type", flat=True))
    assert sorted(types) == ["deploy_finished", "model_version_in_production"]


def test_no_webhook_without_a_url(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.TRADEBOT_WEBHOOK_URL = ""
    monkeypatch.setattr(send_webhook, "delay", lambda event_id: pytest.fail("sent"))
    notifications.webhook_queue(1)
