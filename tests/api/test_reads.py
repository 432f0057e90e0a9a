"""Reads over HTTP: paging and filters, what each target serves, deployments with their steps,
and the audit trail with the admin's export and verification."""

from __future__ import annotations

import json
from typing import Any

from models_registry.models import AuditEvent, ModelState
from tests.api.conftest import Api


def test_versions_page_by_cursor_and_filter_by_state(
    api_for: Any, engineer: Any, version_factory: Any
) -> None:
    for state in (ModelState.TRAINED, ModelState.TRAINED, ModelState.VALIDATED):
        version_factory(state)
    api: Api = api_for(engineer)
    seen: list[int] = []
    url = "versions/?page_size=2"
    while url:
        page = api.get(url).json()
        seen += [v["id"] for v in page["results"]]
        url = page["next"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 3
    trained = api.get("versions/", params={"state": "trained"}).json()["results"]
    assert len(trained) == 2 and {v["state"] for v in trained} == {"trained"}
    models = api.get("models/").json()["results"]
    assert models == [
        {"name": "btcusdt_price", "versions": 3, "latest_version": 3,
         "latest_created_at": models[0]["latest_created_at"]}
    ]  # fmt: skip


def test_targets_say_what_they_serve_and_deployments_carry_their_steps(
    api_for: Any, auditor: Any, version_factory: Any, production_target: Any
) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    api: Api = api_for(auditor)
    target = api.get(f"targets/{production_target.pk}/").json()
    assert target["serving"]["id"] == live.pk and target["serving"]["state"] == "in_production"
    assert target["active_deployment"] is None
    staging = api.get("targets/", params={"environment": "staging"}).json()["results"]
    assert [t["environment"] for t in staging] == ["staging"]
    deployments = api.get("deployments/", params={"target": production_target.name}).json()
    (deployment,) = deployments["results"]
    detail = api.get(deployment["url"]).json()
    assert detail["steps"] == [] and detail["status"] == "succeeded"
    assert detail["approved_by"] == "alice_approver" and detail["model_version"] == live.pk
    version = api.get(f"versions/{live.pk}/").json()
    assert version["lineage"]["first_unseen_at"] is None or version["lineage"]["first_unseen_at"]
    assert [d["target"] for d in version["deployments"]] == ["production-local", "staging-local"]
    assert version["approvals"][0]["decided_by"] == "alice_approver"
    assert version["validation_policy"]["days"] == 90


def test_audit_export_is_the_admins_and_verifies_and_a_tampered_row_is_named(
    api_for: Any, auditor: Any, version_factory: Any
) -> None:
    version_factory(ModelState.VALIDATED)
    api: Api = api_for(auditor)
    exported = api.get("audit-events/export/", params={"format": "jsonl"})
    assert exported.status_code == 200
    lines = exported.text.splitlines()
    assert len(lines) == AuditEvent.objects.count() > 0
    assert api.get("audit-events/export/", params={"format": "csv"}).text.startswith(
        "id,event_time"
    )

    ok = api.post("audit-events/verify-export/", files={"file": ("a.jsonl", exported.content)})
    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert ok.json()["checked"] == len(lines)
    row = json.loads(lines[1])
    row["actor_repr"] = "someone-else"
    tampered = "\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n"
    bad = api.post("audit-events/verify-export/", files={"file": ("b.jsonl", tampered.encode())})
    assert bad.json()["ok"] is False and bad.json()["first_bad_line"] == 2
    garbage = api.post("audit-events/verify-export/", files={"file": ("c.csv", b"\xff\xfe\x00")})
    assert garbage.status_code == 200 and garbage.json()["ok"] is False

    chain = api.post("audit-events/verify-chain/").json()
    assert chain["ok"] is True and chain["checked"] >= len(lines)
    # The listed rows carry every hashed column, time as the export writes it.
    listed = api.get("audit-events/", params={"page_size": 1}).json()["results"][0]
    assert listed == json.loads(lines[-1]) | {"data": listed["data"]}


def test_the_schema_and_the_browsable_docs_are_served_without_a_cdn(live_server: Any) -> None:
    import requests

    schema = requests.get(f"{live_server.url}/api/schema/?format=json", timeout=30).json()
    assert (
        schema["openapi"].startswith("3.") and "/api/v1/versions/{id}/validate/" in schema["paths"]
    )
    assert schema["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"
    docs = requests.get(f"{live_server.url}/api/docs/", timeout=30)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    scripts = [part.split('"')[0] for part in docs.text.split('src="')[1:]]
    assert scripts and all(
        not s.startswith("http") or s.startswith(live_server.url) for s in scripts
    )
    for script in scripts:
        assert requests.get(f"{live_server.url}{script}", timeout=30).status_code == 200, script
    redoc = requests.get(f"{live_server.url}/api/redoc/", timeout=30)
    assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
    problem = requests.get(f"{live_server.url}/api/problems/conflict/", timeout=30).json()
    assert problem["title"] == "Refused by a lifecycle rule"


def test_a_deployer_rolls_production_back_over_the_api(
    api_for: Any, deployer: Any, version_factory: Any, production_target: Any
) -> None:
    retired = version_factory(ModelState.RETIRED)  # ran before the version now live
    api: Api = api_for(deployer)
    empty = api.post(f"targets/{production_target.pk}/rollback/", json={"comment": " "})
    assert empty.status_code == 400 and "comment" in empty.json()["errors"]
    response = api.post(
        f"targets/{production_target.pk}/rollback/", json={"comment": "live loss above limit"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "rollback" and body["model_version"] == retired.pk
    assert body["status"] == "queued" and body["requested_by"] == deployer.username
    event = AuditEvent.objects.get(event_type="rollback_requested")
    assert event.actor == deployer and event.data["comment"] == "live loss above limit"
