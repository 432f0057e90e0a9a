"""Audit and deployment exports from the admin: every row matching the filter (issue 15).

150 rows, a filter matching 120 of them: the links and the dropdown actions both export
exactly those 120 (the action whatever is ticked), streamed, in CSV and JSON Lines, with
``data`` as canonical JSON, and ``verify_audit_log --export FILE`` accepts the audit file.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from models_registry.models import AuditEvent, DeploymentTarget, Environment, ModelState
from models_registry.services.audit import audit_event_record, canonical_json
from tests.registry.conftest import finished_deployment

pytestmark = pytest.mark.django_db

MATCHING, OTHERS = 120, 30


def rows_of(response: StreamingHttpResponse, fmt: str) -> list[dict[str, Any]]:
    assert response.status_code == 200 and response.streaming, "the export must be streamed"
    body = b"".join(response.streaming_content).decode()
    if fmt == "jsonl":
        return [json.loads(line) for line in body.splitlines()]
    return list(csv.DictReader(io.StringIO(body)))


def export(client: Client, changelist: str, export_name: str, query: str, fmt: str, via: str,
           tick: int) -> StreamingHttpResponse:  # fmt: skip
    if via == "link":
        return client.get(reverse(export_name, args=[fmt]) + query)
    return client.post(
        reverse(changelist) + query,
        {"action": f"export_{fmt}", "_selected_action": [tick], "index": "0"},
    )


@pytest.fixture
def audit_rows(auditor: Any) -> None:
    for n in range(MATCHING):
        audit_event_record(
            event_type="host_check", actor=auditor, data={"n": n, "nested": {"b": 1}}
        )
    for n in range(OTHERS):
        audit_event_record(event_type="deployment_step", actor=auditor, data={"n": n})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("via", ["link", "action"])
def test_audit_export_has_exactly_the_filtered_rows_and_verify_accepts_it(
    fmt: str, via: str, auditor: Any, audit_rows: None, tmp_path: Path
) -> None:
    assert AuditEvent.objects.count() == MATCHING + OTHERS
    client = Client()
    client.force_login(auditor)
    one_ticked = AuditEvent.objects.filter(event_type="host_check").values_list("pk", flat=True)[0]

    response = export(
        client, "admin:models_registry_auditevent_changelist",
        "admin:models_registry_auditevent_export", "?event_type__exact=host_check", fmt, via,
        one_ticked,
    )  # fmt: skip
    rows = rows_of(response, fmt)

    assert len(rows) == MATCHING
    assert {r["event_type"] for r in rows} == {"host_check"}
    first = AuditEvent.objects.filter(event_type="host_check").order_by("id").first()
    assert first is not None
    data = rows[0]["data"]
    # CSV carries data as canonical JSON text (re-hashable), not a Python repr.
    assert (data if fmt == "jsonl" else json.loads(data)) == first.data
    if fmt == "csv":
        assert data == canonical_json(first.data)
    path = tmp_path / f"audit.{fmt}"
    path.write_bytes(b"".join(export(
        client, "admin:models_registry_auditevent_changelist",
        "admin:models_registry_auditevent_export", "?event_type__exact=host_check", fmt, via,
        one_ticked,
    ).streaming_content))  # fmt: skip
    out = io.StringIO()
    call_command("verify_audit_log", "--export", str(path), stdout=out)
    assert f"{MATCHING} rows match" in out.getvalue()


def test_verify_names_the_first_edited_row_of_an_export(
    auditor: Any, audit_rows: None, tmp_path: Path
) -> None:
    client = Client()
    client.force_login(auditor)
    url = reverse("admin:models_registry_auditevent_export", args=["jsonl"])
    rows = rows_of(client.get(url + "?event_type__exact=host_check"), "jsonl")
    rows[5]["data"]["n"] = 999
    path = tmp_path / "edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CommandError, match=f"line 6 \\(event #{rows[5]['id']}\\)"):
        call_command("verify_audit_log", "--export", str(path), stdout=io.StringIO())


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("via", ["link", "action"])
def test_deployment_export_has_exactly_the_filtered_rows(
    fmt: str, via: str, auditor: Any, deployer: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.TRAINED)
    chosen = DeploymentTarget.objects.create(name="prod-a", environment=Environment.PRODUCTION)
    other = DeploymentTarget.objects.create(name="prod-b", environment=Environment.PRODUCTION)
    for _ in range(MATCHING):
        finished_deployment(version, chosen, deployer)
    for _ in range(OTHERS):
        finished_deployment(version, other, deployer)
    client = Client()
    client.force_login(auditor)
    tick = chosen.deployments.values_list("pk", flat=True)[0]

    response = export(
        client, "admin:models_registry_deployment_changelist",
        "admin:models_registry_deployment_export", f"?target__id__exact={chosen.pk}", fmt, via,
        tick,
    )  # fmt: skip
    rows = rows_of(response, fmt)

    assert len(rows) == MATCHING
    assert {r["target"] for r in rows} == {"prod-a"}


def test_the_export_actions_need_the_auditor_role(deployer: Any, audit_rows: None) -> None:
    client = Client()
    client.force_login(deployer)
    pk = AuditEvent.objects.values_list("pk", flat=True)[0]
    response = client.post(
        reverse("admin:models_registry_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [pk], "index": "0"},
    )
    assert not getattr(response, "streaming", False)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_genuine_export_of_a_keyed_chain_verifies(
    fmt: str, auditor: Any, settings: Any, tmp_path: Path
) -> None:
    """Keyed rows are HMACs: the export check must hash under the same key (it did not)."""
    key_file = tmp_path / "audit.key"
    key_file.write_text("an-audit-key-outside-the-database\n")
    settings.AUDIT_HMAC_KEY_FILE = str(key_file)
    for n in range(4):
        audit_event_record(event_type="host_check", data={"n": n, "text": "ünïcode\n"})
    client = Client()
    client.force_login(auditor)
    url = reverse("admin:models_registry_auditevent_export", args=[fmt])
    path = tmp_path / f"keyed.{fmt}"
    path.write_bytes(b"".join(client.get(url + "?event_type__exact=host_check").streaming_content))
    out = io.StringIO()
    call_command("verify_audit_log", "--export", str(path), stdout=out)
    assert "4 rows match" in out.getvalue()
    # An edit is still found, under the key.
    rows = rows_of(client.get(reverse("admin:models_registry_auditevent_export", args=["jsonl"])
                              + "?event_type__exact=host_check"), "jsonl")  # fmt: skip
    rows[1]["data"]["n"] = 7
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CommandError, match="edited after export"):
        call_command("verify_audit_log", "--export", str(edited), stdout=io.StringIO())
