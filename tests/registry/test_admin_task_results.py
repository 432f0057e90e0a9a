"""Task results in the admin: staff see their own jobs, read-only, with a readable error;
anyone else gets a 403 page that says whose job it is and why it is hidden."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from models_registry.models import RunStatus, ValidationRun

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/tradebot/engine/data/store.py", line 88, in read_candles\n'
    "    raise StoreEmptyError(...)\n"
    "engine.data.errors.StoreEmptyError: no ETHUSDT 1h candles stored in /srv/data\n"
)


def failed_training(user: Any, task_id: str = "7f3c9e21-train") -> TaskResult:
    """A training task as the database backend stores it (argsrepr, JSON-encoded)."""
    return TaskResult.objects.create(
        task_id=task_id,
        task_name="models_registry.train_model",
        status="FAILURE",
        task_args=json.dumps(repr(("ETHUSDT", {"epochs": 20, "end": None}, user.pk))),
        result=json.dumps(
            {
                "exc_type": "StoreEmptyError",
                "exc_message": ["no ETHUSDT 1h candles stored in /srv/data"],
                "exc_module": "engine.data.errors",
            }
        ),
        traceback=TRACEBACK,
    )


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_url(task: TaskResult) -> str:
    return reverse("admin:django_celery_results_taskresult_change", args=[task.pk])


@pytest.mark.django_db
def test_owner_sees_the_error_as_one_sentence_not_a_traceback(engineer: Any) -> None:
    task = failed_training(engineer)

    page = client_for(engineer).get(change_url(task))

    assert page.status_code == 200
    html = page.text
    sentence = "The task failed (StoreEmptyError): no ETHUSDT 1h candles stored in /srv/data."
    assert f'<p class="errornote task-error">{sentence}</p>' in html
    assert "erin_engineer" in html and "train model" in html
    # The frames stay folded away for debugging: nothing of them in the page's main text.
    before_details = html.split("<details")[0]
    assert "Traceback (most recent call last)" not in before_details
    assert "<summary>Traceback (for debugging)</summary>" in html
    # Read-only: no save button, no delete link.
    assert 'name="_save"' not in html and "/delete/" not in html


@pytest.mark.django_db
def test_someone_else_gets_a_readable_403_naming_the_owner(
    engineer: Any, second_engineer: Any, approver: Any
) -> None:
    task = failed_training(engineer)

    for stranger in (second_engineer, approver):
        page = client_for(stranger).get(change_url(task))
        assert page.status_code == 403
        assert "<h2>403: Not your task</h2>" in page.text
        assert (
            f"You cannot see task {task.task_id[:8]}: it is the train model started by "
            "erin_engineer, and staff see only the results of jobs they started themselves."
        ) in page.text
        assert "StoreEmptyError" not in page.text  # nothing of the job leaks
        assert 'id="site-name"' in page.text, "the page is in the admin's frame"


@pytest.mark.django_db
def test_the_list_holds_only_own_jobs_and_a_link_to_anothers_is_refused(
    engineer: Any, second_engineer: Any, version_factory: Any
) -> None:
    mine = failed_training(engineer, "aaaa1111-mine")
    theirs = failed_training(second_engineer, "bbbb2222-theirs")
    version = version_factory()
    run = ValidationRun.objects.create(
        model_version=version, requested_by=engineer, task_id="cccc3333-run",
        status=RunStatus.QUEUED,
    )  # fmt: skip
    TaskResult.objects.create(task_id=run.task_id, task_name="models_registry.run_validation",
                              status="SUCCESS", result=json.dumps({"run": run.pk}))  # fmt: skip
    scheduled = TaskResult.objects.create(
        task_id="dddd4444-beat", task_name="models_registry.revalidate_production",
        periodic_task_name="revalidate production daily", status="SUCCESS",
    )  # fmt: skip
    listing = reverse("admin:django_celery_results_taskresult_changelist")

    page = client_for(engineer).get(listing).text

    assert "aaaa1111" in page and "cccc3333" in page and f"validation run #{run.pk}" in page
    assert "bbbb2222" not in page and "dddd4444" not in page
    # The version list links a training job as "?task_id=...": another's is named, not empty.
    refused = client_for(engineer).get(f"{listing}?task_id={theirs.task_id}")
    assert refused.status_code == 403
    assert "started by evan_engineer" in refused.text
    beat = client_for(engineer).get(change_url(scheduled))
    assert beat.status_code == 403
    assert "started by the scheduler rather than a person" in beat.text
    assert client_for(engineer).get(f"{listing}?task_id={mine.task_id}").status_code == 200


@pytest.mark.django_db
def test_an_id_that_only_ends_like_mine_is_not_mine(engineer: Any) -> None:
    # The owner's id is the whole last argument: user 3 does not own a job of user 13.
    other_id = int(f"1{engineer.pk}")
    task = TaskResult.objects.create(
        task_id="eeee5555-other", task_name="models_registry.check_target_hosts",
        status="SUCCESS", task_args=json.dumps(repr((4, other_id))),
    )  # fmt: skip
    assert client_for(engineer).get(change_url(task)).status_code == 403
