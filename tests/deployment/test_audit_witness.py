"""The audit chain's witnesses on production hosts: attacks from the control host alone.

The class: someone who holds the control host (the database through the app's own role,
the anchor file, the readable audit key) removes or rewrites the newest events and makes
the control host's own evidence agree. Each member is caught when a real SSH host holds
the signed head (a witness), and is reported as "cannot show truncation" when no anchor
and no witness is configured. Runs on PostgreSQL (under tests.stack) and on SQLite
(plain pytest), with a real OpenSSH server on loopback as the production host.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from models_registry import roles
from models_registry.models import AuditEvent, DeploymentHost, DeploymentTarget
from models_registry.services import audit_witness
from models_registry.services.audit import (
    Anchor,
    anchor_line,
    audit_event_record,
    audit_hmac_key,
)
from tests.deployment.hosts import SshServer
from tests.registry.conftest import make_user, on_postgresql
from tests.registry.test_audit_chain import (
    TABLE,
    append_only_trigger_disabled,
    raw_sql,
    rewrite_chain_from,
)

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- set-up


@pytest.fixture
def keyed_anchor(settings: Any, tmp_path: Path) -> Path:
    key_file = tmp_path / "audit.key"
    key_file.write_text("the-audit-key-readable-on-the-control-host\n")
    settings.AUDIT_HMAC_KEY_FILE = str(key_file)
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "audit-anchors.jsonl")
    return Path(settings.AUDIT_ANCHOR_FILE)


@pytest.fixture
def witness_root(
    ssh_server_factory: Callable[[], SshServer], ssh_user_key: Path, tmp_path: Path
) -> Path:
    """A production target with one real SSH host; returns that host's install root."""
    server = ssh_server_factory()
    root = tmp_path / "host" / "opt"
    root.mkdir(parents=True)
    target = DeploymentTarget.objects.create(
        name="prod-witness",
        environment="production",
        ssh_user="root",
        ssh_key_path=str(ssh_user_key),
        known_hosts=server.known_hosts_line(),
        command_timeout_seconds=30,
    )
    DeploymentHost.objects.create(
        target=target, hostname="127.0.0.1", port=server.port, install_root=str(root)
    )
    return root


def committed_events(capture: Any, count: int) -> list[AuditEvent]:
    events = []
    for n in range(count):
        with capture(execute=True):
            events.append(audit_event_record(event_type="host_check", data={"n": n}))
    return events


def verify(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_audit_log", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


# --------------------------------------------------------------------------- the attacks


def truncate_table() -> None:
    with append_only_trigger_disabled():
        raw_sql(f"TRUNCATE TABLE {TABLE}" if on_postgresql() else f"DELETE FROM {TABLE}", [])


def delete_newest(events: list[AuditEvent]) -> None:
    with append_only_trigger_disabled():
        raw_sql(f"DELETE FROM {TABLE} WHERE id >= %s", [events[-3].pk])


def empty_anchor_file(anchor_file: Path | None) -> None:
    if anchor_file is not None and anchor_file.exists():
        anchor_file.write_text("")


def trim_anchor_file(anchor_file: Path | None) -> None:
    """Keep only the lines of events still in the table."""
    if anchor_file is None or not anchor_file.exists():
        return
    remaining = set(AuditEvent.objects.values_list("id", flat=True))
    lines = [
        line
        for line in anchor_file.read_text().splitlines()
        if json.loads(line)["last_id"] in remaining
    ]
    anchor_file.write_text("".join(f"{line}\n" for line in lines))


def resign_anchor_file(anchor_file: Path | None) -> None:
    """Re-sign an anchor for every row as it now is, with the readable key."""
    if anchor_file is None:
        return
    key = audit_hmac_key()
    rows = AuditEvent.objects.order_by("id").values_list("id", "row_hash")
    anchor_file.write_text("".join(anchor_line(Anchor(pk, h), key) + "\n" for pk, h in rows))


def attack_truncate(events: list[AuditEvent], anchor_file: Path | None) -> None:
    truncate_table()
    empty_anchor_file(anchor_file)


def attack_delete_newest_and_trim(events: list[AuditEvent], anchor_file: Path | None) -> None:
    delete_newest(events)
    trim_anchor_file(anchor_file)


def attack_delete_newest_and_empty(events: list[AuditEvent], anchor_file: Path | None) -> None:
    delete_newest(events)
    empty_anchor_file(anchor_file)


def attack_rewrite_and_resign(events: list[AuditEvent], anchor_file: Path | None) -> None:
    rewrite_chain_from(events[2].pk, key=audit_hmac_key())
    resign_anchor_file(anchor_file)


ATTACKS = {
    "truncate": attack_truncate,
    "delete-newest-trim-anchors": attack_delete_newest_and_trim,
    "delete-newest-empty-anchors": attack_delete_newest_and_empty,
    "rewrite-resign-anchors": attack_rewrite_and_resign,
}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_control_host_attack_is_caught_by_the_witness_host(
    attack: str,
    keyed_anchor: Path,
    witness_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    events = committed_events(django_capture_on_commit_callbacks, 6)
    written = audit_witness.audit_witness_write()
    assert written and all(error is None for error in written.values()), written
    assert (witness_root / "audit-anchor.json").exists()
    code, text = verify()
    assert code == 0 and "1 witness host(s)" in text, text

    ATTACKS[attack](events, keyed_anchor)

    # The control host's own evidence agrees with the database after the attack...
    code, text = verify("--no-witnesses")
    assert code == 0, text
    # ...but the production host's witness does not.
    code, text = verify()
    assert code == 1, text
    assert "witness prod-witness/" in text, text


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_without_anchors_the_output_says_truncation_cannot_show(
    attack: str, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.AUDIT_HMAC_KEY_FILE = None
    settings.AUDIT_HMAC_KEY = None
    settings.AUDIT_ANCHOR_FILE = None
    events = committed_events(django_capture_on_commit_callbacks, 6)
    code, text = verify()
    assert code == 0 and "cannot show truncation" in text, text

    ATTACKS[attack](events, None)

    code, text = verify()
    assert code == 0, text  # nothing outside the table to compare with
    assert "cannot show truncation" in text
    assert "not keyed" in text


def test_the_scheduled_check_alerts_and_keeps_the_evidence(
    keyed_anchor: Path,
    witness_root: Path,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployer = make_user("dora_deployer", roles.DEPLOYER)
    auditor = make_user("audrey_auditor", roles.AUDITOR)
    deployer.email, auditor.email = "dora@example.com", "audrey@example.com"
    deployer.save()
    auditor.save()
    hooked: list[int] = []
    monkeypatch.setattr(
        "models_registry.services.notifications.webhook_queue",
        lambda event_id: hooked.append(event_id),
    )
    events = committed_events(django_capture_on_commit_callbacks, 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert audit_witness.audit_witness_check().ok
    witnessed = (witness_root / "audit-anchor.log").read_text()
    assert (
        json.loads(witnessed.splitlines()[-1])["last_id"]
        == AuditEvent.objects.order_by("id").last().pk
    )

    attack_delete_newest_and_trim(events, keyed_anchor)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        report = audit_witness.audit_witness_check()

    assert not report.ok and "missing" in report.reason
    mismatch = AuditEvent.objects.filter(event_type="audit_witness_mismatch").get()
    assert hooked[-1] == mismatch.pk
    assert {address for m in mail.outbox for address in m.to} == {
        "dora@example.com",
        "audrey@example.com",
    }
    assert "AUDIT CHAIN MISMATCH" in mail.outbox[0].subject
    # The witness is evidence: a failed check does not overwrite it with the shorter chain.
    assert (witness_root / "audit-anchor.log").read_text() == witnessed
    client = Client()
    client.force_login(auditor)
    page = client.get("/admin/").content.decode()
    assert '<p class="mismatch">MISMATCH' in page
    assert "NOT CHECKED since" not in page
    # A check that stopped coming is red too (beat or the workers are down).
    later = timezone.now() + timedelta(hours=4)
    with mock.patch("django.utils.timezone.now", return_value=later):
        page = client.get("/admin/").content.decode()
    assert '<p class="mismatch">NOT CHECKED since' in page


def test_a_forged_witness_line_is_refused(
    keyed_anchor: Path, witness_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    committed_events(django_capture_on_commit_callbacks, 3)
    audit_witness.audit_witness_write()
    log = witness_root / "audit-anchor.log"
    forged = json.loads(log.read_text().splitlines()[-1])
    forged["last_id"] += 100
    log.write_text(log.read_text() + json.dumps(forged) + "\n")
    code, text = verify()
    assert code == 1 and "MAC is wrong" in text, text


def test_an_unreachable_witness_does_not_confirm_the_chain(
    keyed_anchor: Path, witness_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    committed_events(django_capture_on_commit_callbacks, 3)
    host = DeploymentHost.objects.get()
    # What an intruder with the database would do to hide a witness: point it elsewhere.
    DeploymentHost.objects.filter(pk=host.pk).update(port=1)
    code, text = verify()
    assert code == 1 and "NOT CONFIRMED" in text, text


def test_witnesses_hidden_in_the_database_do_not_pass_with_a_minimum_set(
    keyed_anchor: Path,
    witness_root: Path,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    events = committed_events(django_capture_on_commit_callbacks, 4)
    audit_witness.audit_witness_write()
    settings.AUDIT_MIN_WITNESSES = 1
    assert verify()[0] == 0
    # An intruder with the database makes the production target look like staging, so no
    # witness is read; then deletes the newest events and empties the anchor file.
    DeploymentTarget.objects.filter(name="prod-witness").update(environment="staging")
    attack_delete_newest_and_empty(events, keyed_anchor)
    code, text = verify()
    assert code == 1 and "AUDIT_MIN_WITNESSES is 1" in text, text
    # Without the minimum the same attack passes: no witness was read at all.
    settings.AUDIT_MIN_WITNESSES = 0
    code, text = verify()
    assert code == 0 and "0 witness host(s)" in text, text


# --------------------------------------------------------------------------- generated members

TREATMENTS = {
    "keep": lambda anchor_file: None,
    "empty": empty_anchor_file,
    "trim": trim_anchor_file,
    "resign": resign_anchor_file,
}


def reset_chain(anchor_file: Path, witness_root: Path) -> None:
    """A fresh start for one generated example: no events, no anchors, no witness."""
    truncate_table()
    anchor_file.write_text("")
    for name in ("audit-anchor.json", "audit-anchor.log"):
        (witness_root / name).unlink(missing_ok=True)


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    witnessed=st.integers(min_value=1, max_value=8),
    later=st.integers(min_value=0, max_value=4),
    cut_back=st.integers(min_value=1, max_value=12),
    rewrite=st.booleans(),
    treatment=st.sampled_from(list(TREATMENTS)),
)
def test_generated_control_host_attacks_are_caught_exactly_up_to_the_witnessed_head(
    witnessed: int,
    later: int,
    cut_back: int,
    rewrite: bool,
    treatment: str,
    keyed_anchor: Path,
    witness_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """`witnessed` events, the head given to the host, `later` events after it; then the
    newest `cut_back` events are deleted (or, with `rewrite`, the chain is rewritten from
    there with the key) and the anchor file treated to match. Caught exactly when the
    attack reaches an event at or before the witnessed head (docs/audit.md)."""
    reset_chain(keyed_anchor, witness_root)
    events = committed_events(django_capture_on_commit_callbacks, witnessed)
    audit_witness.audit_witness_write()
    events += committed_events(django_capture_on_commit_callbacks, later)
    first_touched = events[max(len(events) - cut_back, 0)]
    if rewrite:
        rewrite_chain_from(first_touched.pk, key=audit_hmac_key())
    else:
        with append_only_trigger_disabled():
            raw_sql(f"DELETE FROM {TABLE} WHERE id >= %s", [first_touched.pk])
    TREATMENTS[treatment](keyed_anchor)

    code, text = verify()

    reaches_witness = first_touched.pk <= events[witnessed - 1].pk
    if reaches_witness:
        assert code == 1, text
    elif treatment in ("empty", "resign") or (treatment == "trim" and not rewrite):
        # After the witnessed head, only the control host's own anchor file could tell,
        # and the attacker made it agree: the documented limit of a witness. (Trimming
        # does not hide a rewrite: every id is still there, with its old anchored hash.)
        assert code == 0, text
    else:
        assert code == 1, text  # the untouched (or trimmed) anchor file still catches it
