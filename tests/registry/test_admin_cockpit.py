"""The version page as a cockpit, decision pages with evidence, readable numbers, exports."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from models_registry import exports, formatting
from models_registry.models import Approval, AuditEvent, ModelState, ModelVersion
from tests.registry.test_admin_permissions import csrf_client

CHANGE = "admin:models_registry_modelversion_change"


def action_buttons(html: str) -> set[str]:
    banner = html.split('id="cockpit"', 1)[1].split("</div>", 1)[0]
    return set(re.findall(r'data-action="([a-z_]+)"', banner))


# --- formatting (no database) ---------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "text"),
    [
        (0.0123, "1.23 %"),
        (-3e-5, "-0.003 %"),  # a tiny loss keeps three significant figures, never 0.00 %
        (0.49177330895795246, "49.18 %"),
        (0, "0.00 %"),
        (None, "—"),
    ],
)
def test_fractions_read_as_percentages(fraction, text) -> None:
    assert formatting.percent(fraction) == text


def test_small_numbers_keep_three_significant_figures() -> None:
    assert formatting.number(0.000012345) == "1.23e-05"
    assert formatting.number(1.23456) == "1.23"


def test_timestamps_are_utc_with_the_zone() -> None:
    assert formatting.utc("2024-03-01T13:00:00+01:00") == "2024-03-01 12:00:00 UTC"


def test_nested_data_renders_as_tables_not_json() -> None:
    html = formatting.key_value_table({"b": {"x": 1}, "a": [{"n": 1}], "total_return": 0.5})
    assert "{" not in html and "<table" in html and "50.00 %" in html


# --- the cockpit ----------------------------------------------------------------


@pytest.mark.django_db
def test_banner_says_who_must_approve_and_offers_only_the_approvers_buttons(
    engineer, approver, version_factory
) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    approver_page = csrf_client(approver)[0].get(reverse(CHANGE, args=[staged.pk])).text
    assert "waits for approval by someone other than erin_engineer" in approver_page
    assert action_buttons(approver_page) == {"approve_versions", "reject_versions"}
    engineer_page = csrf_client(engineer)[0].get(reverse(CHANGE, args=[staged.pk])).text
    assert action_buttons(engineer_page) == set()
    assert "No action of yours applies" in engineer_page


@pytest.mark.django_db
def test_approve_button_leads_to_evidence_then_approves(approver, version_factory) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    client, token = csrf_client(approver)
    url = reverse("admin:models_registry_version_action", args=[staged.pk, "approve_versions"])
    page = client.get(url)
    text = page.text
    assert page.status_code == 200
    assert staged.onnx_sha256 in text
    assert "validation run #" in text and "paper run #" in text
    assert 'class="gates"' in text and "min_sharpe" in text
    assert "Targets and hosts" in text
    assert "{&quot;" not in text and '{"' not in text  # no raw JSON
    response = client.post(url, {"comment": "passes every gate", "apply": "1",
                                 "csrfmiddlewaretoken": token})  # fmt: skip
    assert response.status_code == 302 and response.url == reverse(CHANGE, args=[staged.pk])
    assert ModelVersion.objects.get(pk=staged.pk).state == ModelState.APPROVED
    assert Approval.objects.filter(model_version=staged, decision="approved").count() == 1


@pytest.mark.django_db
def test_button_for_an_action_the_role_lacks_refuses_in_words(engineer, version_factory) -> None:
    staged = version_factory(ModelState.PAPER_TESTED)
    client, _ = csrf_client(engineer)
    url = reverse("admin:models_registry_version_action", args=[staged.pk, "approve_versions"])
    response = client.get(url, follow=True)
    assert "You may not approve" in response.text
    assert ModelVersion.objects.get(pk=staged.pk).state == ModelState.PAPER_TESTED


@pytest.mark.django_db
def test_dropdown_offers_only_actions_for_states_present(approver, version_factory) -> None:
    version_factory(ModelState.TRAINED)
    client, _ = csrf_client(approver)
    page = client.get(reverse("admin:models_registry_modelversion_changelist")).text
    assert 'value="reject_versions"' in page
    assert 'value="approve_versions"' not in page  # nothing is staged


@pytest.mark.django_db
def test_rollback_names_the_version_it_restores(deployer, version_factory) -> None:
    old = version_factory(ModelState.RETIRED)  # a newer version now runs on production
    live = ModelVersion.objects.get(state=ModelState.IN_PRODUCTION)
    client, _ = csrf_client(deployer)
    url = reverse("admin:models_registry_version_action", args=[live.pk, "rollback_production"])
    preview = client.get(url).text.split("rollback-preview", 1)[1].split("</table>", 1)[0]
    assert str(live) in preview
    assert str(old) in preview or "cannot:" in preview


@pytest.mark.django_db
def test_messages_keep_the_names_case(engineer, version_factory) -> None:
    trained = version_factory(ModelState.VALIDATED)
    client, token = csrf_client(engineer)
    response = client.post(
        reverse("admin:models_registry_modelversion_changelist"),
        {"action": "validate_versions", "_selected_action": [trained.pk],
         "csrfmiddlewaretoken": token},
        follow=True,
    )  # fmt: skip
    assert f"{trained}: " in response.text and "Btcusdt" not in response.text


# --- exports --------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_export_has_every_filtered_row_and_reverifies(
    auditor, version_factory, tmp_path: Path
) -> None:
    version_factory(ModelState.PAPER_TESTED)
    client, _ = csrf_client(auditor)
    url = reverse("admin:models_registry_auditevent_export", args=["jsonl"])
    body = b"".join(client.get(url + "?event_type=model_version_validated").streaming_content)
    rows = [json.loads(line) for line in body.decode().splitlines()]
    expected = AuditEvent.objects.filter(event_type="model_version_validated").count()
    assert len(rows) == expected >= 1
    everything = b"".join(client.get(url).streaming_content).decode().splitlines()
    assert len(everything) == AuditEvent.objects.count()  # not one page, not the ticked rows
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(everything) + "\n")
    assert exports.verify_export(path).ok
    tampered = [json.loads(line) for line in everything]
    tampered[2]["data"] = {**tampered[2]["data"], "comment": "edited"}
    path.write_text("".join(json.dumps(r) + "\n" for r in tampered))
    report = exports.verify_export(path)
    assert not report.ok and report.first_bad_line == 3
    assert report.first_bad_id == str(tampered[2]["id"])


@pytest.mark.django_db
def test_audit_csv_export_writes_data_as_json(auditor, version_factory, tmp_path: Path) -> None:
    version_factory(ModelState.VALIDATED)
    client, _ = csrf_client(auditor)
    url = reverse("admin:models_registry_auditevent_export", args=["csv"])
    body = b"".join(client.get(url).streaming_content).decode()
    path = tmp_path / "audit.csv"
    path.write_text(body)
    assert exports.verify_export(path).ok
    assert len(body.strip().splitlines()) == AuditEvent.objects.count() + 1


@pytest.mark.django_db
def test_export_needs_the_auditor_role(engineer) -> None:
    client, _ = csrf_client(engineer)
    response = client.get(reverse("admin:models_registry_auditevent_export", args=["csv"]))
    assert response.status_code == 403


@pytest.mark.django_db
def test_verify_audit_log_export_names_the_first_row_that_differs(
    auditor, version_factory, tmp_path: Path
) -> None:
    from django.core.management import CommandError, call_command

    version_factory(ModelState.VALIDATED)
    client, _ = csrf_client(auditor)
    url = reverse("admin:models_registry_auditevent_export", args=["csv"])
    body = b"".join(client.get(url).streaming_content).decode()
    path = tmp_path / "audit.csv"
    path.write_text(body)
    call_command("verify_audit_log", "--export", str(path))
    rows = list(csv.DictReader(io.StringIO(body)))
    rows[1]["object_repr"] = "someone else v9"  # the second row, line 3 of the file
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CommandError, match=rf"line 3 \(event #{rows[1]['id']}\)"):
        call_command("verify_audit_log", "--export", str(path))


# --- the Train form -------------------------------------------------------------


@pytest.mark.django_db
def test_train_form_passes_window_end_gap_policy_kind_and_epochs(
    engineer, monkeypatch, stored_candles
) -> None:
    from models_registry.tasks import training

    stored_candles("BTCUSDT", "2023-06-01")
    queued: list[tuple] = []

    class Result:
        id = "0123456789abcdef"

    monkeypatch.setattr(training.train_model_task, "delay", lambda *a: queued.append(a) or Result())
    client, token = csrf_client(engineer)
    form = {"symbol": "BTCUSDT", "kind": "price", "end": "2024-06-01", "gap_policy": "ffill",
            "max_fill": 2, "epochs": 2, "csrfmiddlewaretoken": token}  # fmt: skip
    response = client.post(reverse("admin:models_registry_train"), form, follow=True)
    assert "training of BTCUSDT queued" in response.text
    ((symbol, options, user_id),) = queued
    assert symbol == "BTCUSDT" and user_id == engineer.pk
    assert options == {"force_price_only": True, "epochs": 2, "start": None,
                       "end": "2024-06-01", "gap_policy": "ffill", "max_fill": 2}  # fmt: skip


@pytest.mark.django_db
def test_train_form_error_is_one_readable_sentence(engineer, monkeypatch, stored_candles) -> None:
    from models_registry.tasks import training

    stored_candles("BTCUSDT", "2023-06-01")
    monkeypatch.setattr(training.train_model_task, "delay", lambda *a: pytest.fail("queued"))
    client, token = csrf_client(engineer)
    form = {"symbol": "BTCUSDT", "kind": "sentiment", "start": "2024-06-01",
            "end": "2024-01-01", "gap_policy": "refuse", "max_fill": 3, "epochs": 2,
            "csrfmiddlewaretoken": token}  # fmt: skip
    text = client.post(reverse("admin:models_registry_train"), form, follow=True).text
    message = re.search(r'<li class="error">([^<]*)</li>', text).group(1)
    assert message.startswith("training not queued: start (2024-06-01")
    assert "[" not in message and "ErrorList" not in message


@pytest.mark.django_db
def test_history_button_shows_the_audit_trail(auditor, version_factory) -> None:
    version = version_factory(ModelState.VALIDATED)
    client, _ = csrf_client(auditor)
    page = client.get(reverse("admin:models_registry_modelversion_history", args=[version.pk]),
                      follow=True).text  # fmt: skip
    assert "model_version_validated" in page
    listed = re.findall(r'<td class="field-object_repr">([^<]*)</td>', page)
    assert listed and set(listed) == {str(version)}


@pytest.mark.django_db
def test_train_form_sends_the_search_budget_under_the_name_the_service_takes(
    engineer, monkeypatch, stored_candles
) -> None:
    from models_registry.services.training import training_options_parse
    from models_registry.tasks import training

    stored_candles("BTCUSDT", "2023-06-01")
    queued: list[tuple] = []

    class Result:
        id = "0123456789abcdef"

    monkeypatch.setattr(training.train_model_task, "delay", lambda *a: queued.append(a) or Result())
    client, token = csrf_client(engineer)
    form = {"symbol": "BTCUSDT", "kind": "sentiment", "gap_policy": "ffill", "max_fill": 3,
            "epochs": 2, "search_trials": 4, "csrfmiddlewaretoken": token}  # fmt: skip
    response = client.post(reverse("admin:models_registry_train"), form, follow=True)
    assert "training of BTCUSDT queued" in response.text
    ((_symbol, options, _user_id),) = queued
    assert options["search"] == 4 and "n_trials" not in options
    assert training_options_parse(options).search == 4  # the service reads the same key


def searched_version(tmp_path: Path, engineer, plot_name: str) -> ModelVersion:
    from models_registry.services.model_versions import model_version_create
    from tests.registry.conftest import write_artifact_dir

    trials = [
        {"number": 0, "params": {"units": 16, "dropout": 0.1}, "value": 0.6931, "state": "complete",
         "error": ""},
        {"number": 1, "params": {"units": 64}, "value": None, "state": "failed",
         "error": "selection loss is not finite (nan)"},
    ]  # fmt: skip
    search = {"n_trials": 2, "selection_metric": "validation_loss", "direction": "minimize",
              "best_trial": 0, "trials": trials, "plot": plot_name}  # fmt: skip
    folder = write_artifact_dir(tmp_path / "searched", search=search)
    (folder / "btcusdt_price_trials.png").write_bytes(b"\x89PNG\r\n\x1a\ntrials")
    return model_version_create(source_dir=folder, created_by=engineer)


@pytest.mark.django_db
def test_a_searched_version_page_shows_its_trials_and_serves_their_plot(
    tmp_path: Path, engineer
) -> None:
    version = searched_version(tmp_path, engineer, "btcusdt_price_trials.png")
    client, _ = csrf_client(engineer)
    page = client.get(reverse(CHANGE, args=[version.pk])).text
    table = page.split('id="search-trials"', 1)[1].split("</div>", 1)[0]
    assert "2 trials, validation_loss (minimize), best #0" in page
    assert "selection loss is not finite (nan)" in table and "failed" in table
    assert "dropout" in table and "units" in table
    url = reverse("admin:models_registry_artifact", args=["modelversion", version.pk, "trials"])
    assert f'src="{url}"' in page
    served = client.get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content).endswith(b"trials")


@pytest.mark.django_db
def test_a_trials_plot_name_that_is_a_path_is_never_served(tmp_path: Path, engineer) -> None:
    version = searched_version(tmp_path, engineer, "../../etc/passwd.png")
    client, _ = csrf_client(engineer)
    page = client.get(reverse(CHANGE, args=[version.pk])).text
    url = reverse("admin:models_registry_artifact", args=["modelversion", version.pk, "trials"])
    assert url not in page
    assert client.get(url).status_code == 404
    run_url = reverse("admin:models_registry_artifact", args=["validationrun", 1, "trials"])
    assert client.get(run_url).status_code == 404


def comparison_module(html: str) -> str:
    return html.split('id="comparison"', 1)[1].split("</div>", 1)[0]


@pytest.mark.django_db
def test_the_version_page_compares_with_production_on_the_same_window_only(
    approver, version_factory
) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    staged = version_factory(ModelState.PAPER_TESTED)
    mine = staged.validation_runs.get()
    theirs = live.validation_runs.get()
    type(mine).objects.filter(pk=mine.pk).update(metrics={"total_return": 0.0412, "trades": 9})
    type(theirs).objects.filter(pk=theirs.pk).update(metrics={"total_return": -3e-5, "trades": 4})
    theirs.refresh_from_db()
    assert (mine.window_start, mine.window_end) == (theirs.window_start, theirs.window_end)
    client, _ = csrf_client(approver)
    page = comparison_module(client.get(reverse(CHANGE, args=[staged.pk])).text)
    assert str(live) in page
    assert formatting.window(mine.window_start, mine.window_end) in page
    assert formatting.metric("total_return", theirs.metrics["total_return"]) in page

    # Production's only run on another window: no side-by-side, a sentence saying why.
    type(theirs).objects.filter(pk=theirs.pk).update(
        window_start=theirs.window_start - (theirs.window_end - theirs.window_start)
    )
    page = comparison_module(client.get(reverse(CHANGE, args=[staged.pk])).text)
    assert "<table" not in page
    assert "has no run on this window" in page and "not be like for like" in page
