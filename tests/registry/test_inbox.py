"""The admin home shows each user what waits for their roles, each item linked."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from models_registry.models import (
    Approval,
    ApprovalSuspension,
    ModelState,
    RunStatus,
)
from tests.registry.conftest import passing_validation_run
from tests.registry.test_admin_permissions import csrf_client

HOME = "admin:index"


def inbox(client) -> str:
    page = client.get(reverse(HOME)).text
    return page.split('id="inbox"', 1)[1].split("</div>", 1)[0]


@pytest.mark.django_db
def test_each_role_sees_what_waits_for_it_with_a_link(
    engineer, approver, deployer, version_factory
) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    approved = version_factory(ModelState.APPROVED)
    run = passing_validation_run(
        staged, requested_by=engineer, status=RunStatus.FAILED, passed=False,
        finished_at=timezone.now(),
    )  # fmt: skip
    approve_url = reverse(
        "admin:models_registry_version_action", args=[staged.pk, "approve_versions"]
    )
    deploy_url = reverse(
        "admin:models_registry_version_action", args=[approved.pk, "deploy_versions"]
    )
    run_url = reverse("admin:models_registry_validationrun_change", args=[run.pk])

    mine = inbox(csrf_client(approver)[0])
    assert f'href="{approve_url}"' in mine and f"{staged} waits for your approval" in mine
    assert deploy_url not in mine and run_url not in mine

    theirs = inbox(csrf_client(deployer)[0])
    assert f'href="{deploy_url}"' in theirs and approve_url not in theirs

    engineers = inbox(csrf_client(engineer)[0])
    assert f'href="{run_url}"' in engineers and "failed gates" in engineers
    assert approve_url not in engineers  # four eyes: never your own version to approve


@pytest.mark.django_db
def test_a_suspended_approval_asks_the_approver_and_leaves_the_deployer(
    approver, deployer, version_factory
) -> None:
    approved = version_factory(ModelState.APPROVED)
    decision = Approval.objects.get(model_version=approved, decision="approved")
    ApprovalSuspension.objects.create(approval=decision, reason="drift")
    assert "needs a new decision" in inbox(csrf_client(approver)[0])
    deploy_url = reverse(
        "admin:models_registry_version_action", args=[approved.pk, "deploy_versions"]
    )
    assert deploy_url not in inbox(csrf_client(deployer)[0])


# --- jobs are visible ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_queued_validation_shows_as_a_job_and_is_not_offered_again(
    engineer, version_factory
) -> None:
    import json
    import re

    trained = version_factory(ModelState.TRAINED)
    client, token = csrf_client(engineer)
    page_url = reverse("admin:models_registry_modelversion_change", args=[trained.pk])
    before = client.get(page_url).text
    assert 'data-action="validate_versions"' in before and 'data-running="0"' in before
    client.post(
        reverse("admin:models_registry_version_action", args=[trained.pk, "validate_versions"]),
        {"csrfmiddlewaretoken": token},
    )
    run = trained.validation_runs.order_by("-id").first()
    assert run is not None and run.status in ("queued", "running")
    after = client.get(page_url).text
    banner = after.split('id="cockpit"', 1)[1].split('id="verdict"', 1)[0]
    assert 'data-action="validate_versions"' not in banner
    assert f"validation run #{run.pk}" in banner and 'data-running="1"' in banner
    assert f"in progress: validation run #{run.pk}" in banner  # the next line says so too
    assert re.search(r"window\.setTimeout\(poll", after)
    payload = json.loads(
        client.get(reverse("admin:models_registry_version_jobs", args=[trained.pk])).content
    )
    assert [j["kind"] for j in payload["running"]] == [f"validation run #{run.pk}"]
    assert payload["running"][0]["status"] in ("queued", "running")


@pytest.mark.django_db
def test_a_version_needing_a_new_approval_offers_the_approver_the_action(
    approver, engineer, version_factory
) -> None:
    from models_registry.models import AuditEvent
    from models_registry.services.lifecycle import current_approval

    approved = version_factory(ModelState.APPROVED)
    decision = Approval.objects.get(model_version=approved, decision="approved")
    ApprovalSuspension.objects.create(approval=decision, reason="re-validation failed")
    page_url = reverse("admin:models_registry_modelversion_change", args=[approved.pk])
    client, token = csrf_client(approver)
    banner = client.get(page_url).text.split('id="cockpit"', 1)[1].split('id="jobs"', 1)[0]
    assert 'data-action="approve_versions"' in banner
    action = reverse("admin:models_registry_version_action", args=[approved.pk, "approve_versions"])
    client.post(action, {"comment": "re-checked the drift", "apply": "1",
                         "csrfmiddlewaretoken": token})  # fmt: skip
    approved.refresh_from_db()
    assert approved.state == ModelState.APPROVED
    assert current_approval(approved) is not None
    assert (
        AuditEvent.objects.filter(
            event_type="model_version_reapproved", object_id=str(approved.pk)
        ).count()
        == 1
    )
    again = client.get(page_url).text.split('id="cockpit"', 1)[1].split('id="jobs"', 1)[0]
    assert 'data-action="approve_versions"' not in again
    # The engineer who trained it never gets the button (four eyes).
    engineers = csrf_client(engineer)[0].get(page_url).text
    assert 'data-action="approve_versions"' not in engineers.split('id="jobs"', 1)[0]


# --- rollback: choices, not free text ------------------------------------------------


@pytest.mark.django_db
def test_rollback_offers_only_restorable_versions_and_a_refusal_keeps_the_comment(
    deployer, version_factory
) -> None:
    from models_registry.models import ModelVersion

    old = version_factory(ModelState.RETIRED)
    live = ModelVersion.objects.get(state=ModelState.IN_PRODUCTION)
    client, token = csrf_client(deployer)
    url = reverse("admin:models_registry_version_action", args=[live.pk, "rollback_production"])
    page = client.get(url).text
    form = page.split("<form", 1)[1]
    assert 'name="to_version"' not in form and 'name="restore"' in form
    assert f"{old} on " in form and f"{live} on " not in form  # never the one running
    choice = form.split('<option value="', 1)[1].split('"', 1)[0]
    assert "selected" in form.split(choice, 1)[1].split("</option>", 1)[0]

    # The old version's approval is suspended meanwhile: refused, the comment stays.
    decision = Approval.objects.filter(model_version=old, decision="approved").latest("id")
    ApprovalSuspension.objects.create(approval=decision, reason="drift")
    response = client.post(url, {"restore": choice, "comment": "host is failing, go back",
                                 "apply": "1", "csrfmiddlewaretoken": token})  # fmt: skip
    assert response.status_code == 200
    assert "host is failing, go back" in response.text
    assert "refused" in response.text or "Select a valid choice" in response.text


# --- train: choices, refused before queueing ------------------------------------------


def _train_post(client, token, **fields):
    form = {"kind": "price", "gap_policy": "refuse", "max_fill": 3, "epochs": 2,
            "csrfmiddlewaretoken": token, **fields}  # fmt: skip
    return client.post(reverse("admin:models_registry_train"), form, follow=True)


@pytest.mark.django_db
@pytest.mark.parametrize("environment", ["production", "staging"])
def test_train_lists_stored_symbols_normalises_case_and_refuses_thin_data_before_queueing(
    engineer, monkeypatch, stored_candles, settings, environment
) -> None:
    import re

    from models_registry.tasks import training

    settings.ENVIRONMENT = environment  # the web queues in production too: the worker refuses
    queued: list[tuple] = []

    class Result:
        id = "0123456789abcdef"

    monkeypatch.setattr(training.train_model_task, "delay", lambda *a: queued.append(a) or Result())
    store = stored_candles("BTCUSDT", "2023-06-01")
    stored_candles("ETHUSDT", "2024-11-01", days=40)
    client, token = csrf_client(engineer)
    page = client.get(reverse("admin:models_registry_train")).text
    assert re.findall(r'<option value="([A-Z]+)"', page) == ["BTCUSDT", "ETHUSDT"]

    assert "training of BTCUSDT queued" in _train_post(client, token, symbol="btcusdt").text
    assert queued[-1][0] == "BTCUSDT"

    for symbol, words in (("ETHUSDT", "40 days"), ("SOLUSDT", "no candles in the data store")):
        text = _train_post(client, token, symbol=symbol).text
        message = re.search(r'<li class="error">([^<]*)</li>', text).group(1)
        assert message.startswith("training not queued") and words in message, message
        assert "[" not in message and str(store) not in message
    assert len(queued) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_periodic_tasks_for_an_auditor_is_a_readable_403(auditor, settings, debug) -> None:
    settings.DEBUG = debug
    client, _ = csrf_client(auditor)
    response = client.get("/admin/django_celery_beat/periodictask/")
    assert response.status_code == 403
    assert "You may not open this page" in response.text
    assert auditor.username in response.text and 'href="/admin/"' in response.text


# --- compare works for everyone -------------------------------------------------------


@pytest.mark.django_db
def test_compare_shows_existing_runs_on_a_shared_window_to_an_approver(
    approver, engineer, version_factory, stored_candles
) -> None:
    from datetime import UTC, datetime

    from models_registry.models import ValidationRun

    stored_candles("BTCUSDT", "2023-06-01", days=580)
    versions = [version_factory(ModelState.PAPER_TESTED) for _ in range(3)]
    for n, version in enumerate(versions):
        ValidationRun.objects.filter(model_version=version).update(
            metrics={"total_return": 0.01 * (n + 1), "sharpe": 1.0 + n, "trades": 5 + n},
            config={"engine": {"fee_bps": 10.0, "slippage_bps": 5.0}},
            # 90 days after everything they trained on (data up to 2024-06-01).
            window_start=datetime(2024, 7, 1, tzinfo=UTC),
            window_end=datetime(2024, 9, 28, 23, tzinfo=UTC),
        )
    ids = ",".join(str(v.pk) for v in versions)
    url = reverse("admin:models_registry_compare") + f"?ids={ids}"
    page = csrf_client(approver)[0].get(url).text
    metrics = page.split('class="compare-metrics"', 1)[1].split("</table>", 1)[0]
    assert "1.00 %" in metrics and "2.00 %" in metrics and "3.00 %" in metrics
    assert "nothing was run again" in page
    assert "Run 3 comparison" not in page and '<form method="post">' not in page
    assert "window=newest" in page

    # On the newest window nothing exists yet: the engineer may fill it, told it is a trial.
    newest = csrf_client(engineer)[0].get(url + "&window=newest").text
    assert "counts as a trial" in newest and "Run 3 comparison backtests" in newest
    assert "Run 3 comparison" not in csrf_client(approver)[0].get(url + "&window=newest").text
