"""Every role's permissions over HTTP, through a live server: a token carries its user's roles
and nothing more, and no token approves or rejects, a superuser's included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from models_registry import roles
from models_registry.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    ValidationRun,
)
from models_registry.services import api_tokens
from tests.api.conftest import Api, token_for, upload_files
from tests.registry.conftest import write_artifact_dir

PROBLEM = "application/problem+json"
READS = (
    "versions/", "models/", "validation-runs/", "paper-runs/", "targets/", "deployments/",
    "audit-events/", "me/",
)  # fmt: skip


def holds(person: Any, codename: str) -> bool:
    return bool(person.has_perm(f"models_registry.{codename}"))


def assert_problem(response: requests.Response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("http")
    detail = body["detail"]
    assert detail.endswith((".", "?")) and "\n" not in detail and len(detail) > 10, detail
    if slug is not None:
        assert body["type"].endswith(f"/api/problems/{slug}/"), body
    return body


@pytest.mark.parametrize(
    "role",
    [roles.ML_ENGINEER, roles.APPROVER, roles.DEPLOYER, roles.AUDITOR, "superuser", "no role"],
)
def test_each_role_can_do_exactly_what_its_role_allows(
    role: str,
    people: dict[str, Any],
    api_for: Any,
    version_factory: Any,
    staging_target: Any,
    production_target: Any,
    tmp_path: Any,
) -> None:
    person = people[role]
    api: Api = api_for(person)
    trained = version_factory(ModelState.TRAINED)
    validated = version_factory(ModelState.VALIDATED)
    paper_tested = version_factory(ModelState.PAPER_TESTED)
    staged = version_factory(ModelState.STAGED)  # staged again: a new forward run
    approved = version_factory(ModelState.APPROVED)
    refusals_before = AuditEvent.objects.filter(event_type="api_action_refused").count()
    may_read = holds(person, "view_modelversion")

    for path in READS:
        response = api.get(path)
        if path == "me/" or may_read:
            assert response.status_code == 200, (path, response.text)
        else:
            assert_problem(response, 403, "permission-denied")
    detail = api.get(f"versions/{approved.pk}/")
    if may_read:
        body = detail.json()
        assert body["state"] == "approved" and body["approvals"][0]["decision"] == "approved"
        assert body["gates"]["validation"] and body["validation_runs"][0]["verdict"] == "passed"

    export = api.get("audit-events/export/", params={"format": "jsonl"})
    if holds(person, "export_audit"):
        assert export.status_code == 200 and export.headers["Content-Type"].startswith(
            "application/x-ndjson"
        )
        assert export.text.count("\n") == AuditEvent.objects.count() or export.text
    else:
        body = assert_problem(export, 403, "permission-denied")
        assert "Auditor" in body["detail"]

    writes = {
        "register_modelversion": lambda: api.post(
            "versions/",
            files=upload_files(write_artifact_dir(tmp_path / "job", name="btcusdt_price")),
        ),
        "validate_modelversion": lambda: api.post(f"versions/{trained.pk}/validate/", json={}),
        "papertrade_modelversion": lambda: api.post(f"versions/{validated.pk}/paper/", json={}),
        "stage_modelversion": lambda: api.post(
            f"versions/{staged.pk}/stage/", json={"target": staging_target.name}
        ),
        "deploy_modelversion": lambda: api.post(
            f"versions/{approved.pk}/deploy/", json={"target": production_target.name}
        ),
    }
    expected_success = {
        "register_modelversion": 201, "validate_modelversion": 202,
        "papertrade_modelversion": 202, "stage_modelversion": 202, "deploy_modelversion": 202,
    }  # fmt: skip
    refused = 0
    for codename, send in writes.items():
        response = send()
        if holds(person, codename):
            assert response.status_code == expected_success[codename], (codename, response.text)
            assert response.headers["Location"].startswith("http")
        else:
            body = assert_problem(response, 403, "permission-denied")
            assert person.get_username() in body["detail"] and codename in body["detail"]
            refused += 1
    rollback = api.post(f"targets/{production_target.pk}/rollback/", json={"comment": "bad"})
    if holds(person, "rollback_modelversion"):
        # Allowed, but nothing ran on the target yet: refused by the lifecycle, not the role.
        assert_problem(rollback, 409, "conflict")
    else:
        assert_problem(rollback, 403, "permission-denied")
        refused += 1

    # Approving and rejecting are a person's act in the admin: refused for every token.
    for verb in ("approve", "reject"):
        body = assert_problem(
            api.post(f"versions/{paper_tested.pk}/{verb}/", json={"comment": "ok"}),
            403,
            "approval-is-a-persons-act",
        )
        assert "admin" in body["detail"] and "superuser" in body["detail"]
        refused += 1
    assert ModelVersion.objects.get(pk=paper_tested.pk).approvals.count() == 0
    events = AuditEvent.objects.filter(event_type="api_action_refused")
    assert events.count() - refusals_before == refused
    assert {e.actor_id for e in events} == {person.pk}

    # What was allowed was done as the token's user, through the services.
    if holds(person, "validate_modelversion"):
        run = ValidationRun.objects.get(model_version=trained)
        assert run.requested_by == person
        assert AuditEvent.objects.filter(
            event_type="validation_requested", actor=person, object_id=str(run.pk)
        ).exists()
    else:
        assert not ValidationRun.objects.filter(model_version=trained).exists()
    assert PaperTradingRun.objects.filter(model_version=validated).exists() == holds(
        person, "papertrade_modelversion"
    )
    assert Deployment.objects.filter(
        model_version=approved, target=production_target
    ).exists() == holds(person, "deploy_modelversion")


def test_no_token_unknown_revoked_and_expired_tokens_are_refused(
    api_for: Any, live_server: Any, engineer: Any
) -> None:
    anonymous = Api(live_server.url, None)
    body = assert_problem(anonymous.get("versions/"), 401, "not-authenticated")
    assert "token" in body["detail"].lower() or "credentials" in body["detail"].lower()
    response = anonymous.get("versions/")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")

    assert_problem(Api(live_server.url, "tbt_" + "x" * 43).get("versions/"), 401)
    assert_problem(Api(live_server.url, "not-even-a-token").get("versions/"), 401)
    bad_header = anonymous.get("versions/", headers={"Authorization": "Bearer a b"})
    assert_problem(bad_header, 401, "authentication-failed")

    api = api_for(engineer)
    assert api.get("versions/").status_code == 200
    token = ApiToken.objects.get(user=engineer)
    assert token.key_hash == api_tokens.secret_hash(api.token) and api.token not in str(
        ApiToken.objects.filter(pk=token.pk).values().get()
    )
    api_tokens.api_token_revoke(token=token, revoked_by=engineer)
    assert "revoked" in assert_problem(api.get("versions/"), 401)["detail"]

    expiring, secret = api_tokens.api_token_create(
        user=engineer, name="short", created_by=engineer,
        expires_at=timezone.now() + timedelta(seconds=1),
    )  # fmt: skip
    ApiToken.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in assert_problem(Api(live_server.url, secret).get("versions/"), 401)["detail"]

    fresh = Api(live_server.url, token_for(engineer))
    engineer.is_active = False
    engineer.save()
    assert "not active" in assert_problem(fresh.get("versions/"), 401)["detail"]


def test_rate_limit_is_per_token_with_retry_after(
    api_for: Any, engineer: Any, deployer: Any, settings: Any
) -> None:
    settings.TRADEBOT_API_RATE = "3/minute"
    first, other = api_for(engineer), api_for(deployer)
    assert [first.get("versions/").status_code for _ in range(3)] == [200, 200, 200]
    limited = first.get("versions/")
    body = assert_problem(limited, 429, "rate-limited")
    assert 0 < int(limited.headers["Retry-After"]) <= 60 and "retry in" in body["detail"]
    # Another token of another user has its own count.
    assert other.get("versions/").status_code == 200


def test_refused_writes_count_against_the_rate_limit_too(
    api_for: Any, nobody: Any, version_factory: Any, settings: Any
) -> None:
    settings.TRADEBOT_API_RATE = "3/minute"
    version = version_factory(ModelState.TRAINED)
    api = api_for(nobody)
    statuses = [api.post(f"versions/{version.pk}/validate/", json={}).status_code for _ in range(5)]
    assert statuses == [403, 403, 403, 429, 429]
    # Only the refusals that were let through are on record: a flood cannot fill the trail.
    assert AuditEvent.objects.filter(event_type="api_action_refused").count() == 3


def test_bad_input_is_a_problem_naming_the_field_never_a_500(
    api_for: Any, engineer: Any, deployer: Any, version_factory: Any
) -> None:
    api = api_for(engineer)
    version = version_factory(ModelState.PAPER_TESTED)
    cases = [
        (api.get("versions/", params={"state": "nonsense"}), 400, "state"),
        (api.get("versions/", params={"version": "99999999999999999999"}), 400, "version"),
        (api.get("versions/", params={"created_after": "yesterday"}), 400, "created_after"),
        (api.get("versions/", params={"name": "a\x00b"}), 400, "name"),
        (api.get("versions/", params={"stat": "failed"}), 400, "stat"),
        (api.get("deployments/", params={"target": ""}), 400, "target"),
        (api.get("versions/", params={"page_size": "lots"}), 400, "page_size"),
        (api.get("models/", params={"limit": "-1"}), 400, "limit"),
        (api.get("versions/99999999999999999999999/"), 404, None),
        (api.get("versions/abc/"), 404, None),
        (api.get("versions/", params={"cursor": "garbage"}), 404, None),
        (api.get("no-such-thing/"), 404, None),
        (api.post("versions", json={}), 404, None),
        (api.post(f"versions/{version.pk}/stage/", data="{not json",
                  headers={"Content-Type": "application/json"}), 400, None),
        (api.post(f"versions/{version.pk}/stage/", json={}), 400, "target"),
        (api.post(f"versions/{version.pk}/stage/", json={"target": "nowhere"}), 400, "target"),
        (api.post(f"versions/{version.pk}/stage/", data="x",
                  headers={"Content-Type": "text/plain"}), 415, None),
        (api.post("versions/", json={"onnx_file": "x"}), 400, "onnx_file"),
        (api.post(f"versions/{version.pk}/validate/", json={}), 409, None),
        (api.session.delete(api.url("versions/"), headers=api.headers()), 405, None),
    ]  # fmt: skip
    for response, status, field_name in cases:
        body = assert_problem(response, status)
        if field_name is not None:
            assert field_name in body["errors"] and body["detail"].startswith(field_name), body
    conflict = cases[-2][0].json()
    assert "paper tested" in conflict["detail"] and conflict["type"].endswith("/conflict/")


def test_a_scheduled_deployment_is_cancelled_by_a_deployer_only(
    api_for: Any, deployer: Any, engineer: Any, version_factory: Any, production_target: Any
) -> None:
    # A window that is closed now, whatever the time: every day but today.
    today = timezone.now().strftime("%a").lower()
    others = [d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today]
    production_target.allowed_hours = f"{','.join(others)} 00:00-24:00"
    production_target.save()
    version = version_factory(ModelState.APPROVED)
    dora, erin = api_for(deployer), api_for(engineer)

    closed = dora.post(f"versions/{version.pk}/deploy/", json={"target": production_target.name})
    assert "window" in assert_problem(closed, 409, "conflict")["detail"]
    scheduled = dora.post(
        f"versions/{version.pk}/deploy/", json={"target": production_target.name, "schedule": True}
    )
    assert scheduled.status_code == 202 and scheduled.json()["status"] == "scheduled"
    deployment_id = scheduled.json()["id"]

    assert_problem(erin.post(f"deployments/{deployment_id}/cancel/", json={"reason": "x"}), 403)
    assert_problem(dora.post(f"deployments/{deployment_id}/cancel/", json={}), 400)
    cancelled = dora.post(f"deployments/{deployment_id}/cancel/", json={"reason": "found a bug"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert Deployment.objects.get(pk=deployment_id).status == DeploymentStatus.CANCELLED
    event = AuditEvent.objects.get(event_type="deployment_cancelled")
    assert event.actor == deployer and event.data["reason"] == "found a bug"
    again = dora.post(f"deployments/{deployment_id}/cancel/", json={"reason": "twice"})
    assert "only a scheduled deployment" in assert_problem(again, 409)["detail"]
    assert AuditEvent.objects.filter(event_type="deployment_cancel_refused").count() == 1


def test_a_token_follows_its_user_roles_at_once(
    api_for: Any, engineer: Any, version_factory: Any
) -> None:
    from django.contrib.auth.models import Group

    api = api_for(engineer)
    version = version_factory(ModelState.TRAINED)
    engineer.groups.remove(Group.objects.get(name=roles.ML_ENGINEER))
    # The role is gone: the same token cannot read or request any more, at the next request.
    assert_problem(api.get("versions/"), 403, "permission-denied")
    assert_problem(api.post(f"versions/{version.pk}/validate/", json={}), 403)
    assert not ValidationRun.objects.exists()
    # And it opens no admin session: the admin does not know bearer tokens.
    admin = requests.get(
        api.base + "/admin/", headers=api.headers(), allow_redirects=False, timeout=30
    )
    assert admin.status_code == 302 and "/admin/login/" in admin.headers["Location"]


def test_requests_without_a_token_are_limited_per_address(live_server: Any, settings: Any) -> None:
    settings.TRADEBOT_API_ANON_RATE = "2/minute"
    schema = f"{live_server.url}/api/schema/"
    assert [requests.get(schema, timeout=30).status_code for _ in range(2)] == [200, 200]
    assert_problem(requests.get(schema, timeout=30), 429, "rate-limited")


def test_an_oversized_json_body_is_a_413_problem_not_a_500(
    api_for: Any, engineer: Any, version_factory: Any, settings: Any
) -> None:
    version = version_factory(ModelState.TRAINED)
    huge = '{"x": "' + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + '"}'
    response = api_for(engineer).post(
        f"versions/{version.pk}/validate/", data=huge, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "request-too-large")
    assert not ValidationRun.objects.exists()
