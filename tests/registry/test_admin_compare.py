"""The admin's Compare: versions side by side on one window none of them trained on.

Real world: 1,000 real BTCUSDT hours from 2024-01-01 and a tiny model trained on the first
600 of them; a second version claims a later training window (everything shifted by 100
hours), so the two versions stop seeing data at different bars. The comparison runs are real
backtests through the validation task.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import onnx
import pandas as pd
import pytest
from django.test import Client
from django.urls import reverse

from models_registry import formatting
from models_registry.models import AuditEvent, ModelState, ModelTrial, ModelVersion, ValidationRun
from models_registry.services import comparison
from models_registry.services.model_versions import model_version_create
from models_registry.tasks.backtest import run_validation
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    media,
    model_dir,
    store,
)
from tests.support.policy import ONE_WINDOW

SHIFT = pd.Timedelta(hours=100)
COMPARE = "admin:models_registry_compare"


def _shift(value: str) -> str:
    return (pd.Timestamp(value) + SHIFT).isoformat()


def later_copy(source: Path, folder: Path) -> Path:
    """The same network as another file, stating a training window 100 hours later and
    another entry level: what a retraining on newer data gives."""
    copy = folder / "later"
    shutil.copytree(source, copy)
    onnx_path = next(copy.glob("*.onnx"))
    graph = onnx.load(onnx_path)
    graph.doc_string = "retrained on later data"
    onnx.save(graph, onnx_path)
    metadata_path = next(copy.glob("*_metadata.json"))
    metadata = json.loads(metadata_path.read_text())
    metadata["onnx_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    for split in metadata["splits"].values():
        for key, value in split.items():
            if key.endswith("_bar"):
                split[key] = _shift(value)
    for key in ("start", "end"):
        if metadata["data"].get(key):
            metadata["data"][key] = _shift(metadata["data"][key])
    metadata["out_of_sample_from"] = _shift(metadata["out_of_sample_from"])
    metadata["strategy"]["params"]["entry"] = metadata["strategy"]["params"]["entry"] + 0.001
    metadata_path.write_text(json.dumps(metadata))
    return copy


@pytest.fixture
def two_versions(media: Path, model_dir: Path, tmp_path: Path, db: None) -> list[ModelVersion]:  # noqa: F811
    first = model_version_create(source_dir=model_dir, created_by=None)
    later = model_version_create(source_dir=later_copy(model_dir, tmp_path), created_by=None)
    assert later.first_unseen_at > first.first_unseen_at
    return [first, later]


def compare_url(versions: list[ModelVersion]) -> str:
    return f"{reverse(COMPARE)}?ids={','.join(str(v.pk) for v in versions)}"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run_queued_comparisons() -> list[ValidationRun]:
    """What the backtest worker does with each queued message (its task id is the row's)."""
    queued = list(ValidationRun.objects.filter(status="queued").order_by("pk"))
    for run in queued:
        run_validation.apply(args=[run.pk], task_id=run.task_id).get()
    return [ValidationRun.objects.get(pk=run.pk) for run in queued]


@pytest.mark.django_db
def test_compare_runs_every_version_on_one_window_none_trained_on(
    two_versions: list[ModelVersion],
    engineer: Any,
    settings: Any,
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    client = client_for(engineer)
    url = compare_url(two_versions)

    # The action on the list leads to the page for exactly the ticked versions.
    action = client.post(
        reverse("admin:models_registry_modelversion_changelist"),
        {"action": "compare_versions", "_selected_action": [v.pk for v in two_versions]},
    )
    assert action.status_code == 302 and action["Location"] == url

    first = client.get(url).text
    assert "No finished run on this window yet for" in first
    assert "Run 2 comparison backtests" in first

    client.post(url)
    pending = client.get(url).text
    assert "Pending:" in pending and '<meta http-equiv="refresh" content="15">' in pending
    client.post(url)  # a second click queues nothing more
    assert ValidationRun.objects.count() == 2

    finished = run_queued_comparisons()

    stored = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=1000)  # one bar after the last
    start = stored.tz_localize("UTC") - pd.Timedelta(days=10)  # the newest 10-day window
    assert {(r.window_start, r.window_end) for r in finished} == {
        (start, stored.tz_localize("UTC") - pd.Timedelta(hours=1))
    }, "one window for all"
    for version in two_versions:
        latest_seen = max(
            pd.Timestamp(s["last_target_bar"]) for s in version.metadata["splits"].values()
        )
        assert start > latest_seen and start >= version.first_unseen_at
    for run in finished:
        assert run.status in ("passed", "failed") and run.exploratory is True
        assert run.exploratory_reasons[0].startswith("a comparison run (admin Compare)")
        assert ModelVersion.objects.get(pk=run.model_version_id).state == ModelState.TRAINED
        assert ModelTrial.objects.filter(validation_run=run, kind="exploratory_validation").exists()
    assert not AuditEvent.objects.filter(event_type="model_version_validated").exists()

    page = client.get(url).text
    shown = formatting.window(start.to_pydatetime(), finished[0].window_end)
    assert f"Every figure below is from one window, {shown} (10 days" in page
    assert f"the latest of them, {two_versions[1]}," in page
    labels = re.findall(r'<polyline class="curve" data-label="([^"]+)"', page)
    runs_by_version = {r.model_version_id: r for r in finished}
    assert labels == [f"{v} (run #{runs_by_version[v.pk].pk})" for v in two_versions] + [
        "buy and hold (same bars)"
    ]
    for label in labels:
        assert f">{label}</text>" in page, "each curve is labelled in the legend"
    assert "Pending:" not in page and "refresh" not in page.split("</head>")[0]
    # Returns as percentages with two decimals, per version, from its own run.
    for run in finished:
        assert formatting.percent(run.metrics["total_return"]) in page
        assert re.fullmatch(r"-?\d+\.\d\d %", formatting.percent(run.metrics["total_return"]))
    # Parameters and lineage side by side; the rows that differ are highlighted.
    assert re.search(r'<tr class="differs"><th>strategy\.params\.entry</th>', page)
    assert re.search(r"<tr><th>strategy\.params\.exit</th>", page), "equal rows stay plain"
    assert re.search(r'<tr class="differs"><th>onnx sha256</th>', page)
    assert re.search(r'<tr class="differs"><th>first unseen bar</th>', page)
    assert re.search(r"<tr><th>dataset sha256</th>", page)


@pytest.mark.django_db
def test_a_finished_run_on_exactly_the_window_is_reused_not_rerun(
    two_versions: list[ModelVersion], engineer: Any, settings: Any
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    url = compare_url(two_versions)
    client = client_for(engineer)
    client.post(url)
    run_queued_comparisons()
    before = set(ValidationRun.objects.values_list("pk", flat=True))

    client.post(url)

    assert set(ValidationRun.objects.values_list("pk", flat=True)) == before
    window = comparison.common_window(two_versions)
    assert all(comparison.run_on_window(v, window).pk in before for v in two_versions)


@pytest.mark.django_db
def test_without_a_common_window_the_page_says_why_in_one_sentence(
    two_versions: list[ModelVersion], engineer: Any, settings: Any
) -> None:
    # 20 days do not fit between the later version's last seen bar and the end of the data.
    settings.TRADEBOT_VALIDATION_POLICY = {"days": 20, **ONE_WINDOW}
    page = client_for(engineer).get(compare_url(two_versions)).text

    sentence = re.search(r'<p class="compare-window errornote">([^<]+)</p>', page).group(1)
    assert sentence.startswith(f"No common window: {two_versions[1]} trained on data up to ")
    assert sentence.endswith("fewer than the policy&#x27;s 20 days.")
    assert sentence.count(". ") == 0, "one sentence"
    assert "Run 2 comparison" not in page and "equity-chart" not in page
    client_for(engineer).post(compare_url(two_versions))
    assert ValidationRun.objects.count() == 0


@pytest.mark.django_db
def test_an_approver_sees_the_comparison_but_cannot_queue_backtests(
    two_versions: list[ModelVersion], approver: Any
) -> None:
    client = client_for(approver)
    page = client.get(compare_url(two_versions)).text
    assert "Someone with the ML engineer role can run them" in page
    assert 'type="submit"' not in page.split('id="content-main"')[1]
    client.post(compare_url(two_versions))
    assert ValidationRun.objects.count() == 0


@pytest.mark.django_db
def test_versions_of_two_markets_are_refused_naming_them(
    version_factory: Any, engineer: Any
) -> None:
    btc = version_factory(name="btcusdt_price")
    eth = version_factory(name="ethusdt_price")
    client = client_for(engineer)

    response = client.get(compare_url([btc, eth]), follow=True)

    assert (
        "cannot compare: compare versions of one market: the selection mixes BTCUSDT 1h, ETHUSDT 1h"
        in response.text
    )


@pytest.mark.django_db
def test_a_comparison_run_that_could_not_run_shows_its_error_and_can_be_retried(
    two_versions: list[ModelVersion], engineer: Any
) -> None:
    from models_registry.services import runs

    window = comparison.common_window(two_versions)
    config = {"start": window.start.isoformat(), "end": window.stop.isoformat(), "comparison": True}
    run = runs.comparison_run_request(
        model_version=two_versions[0], requested_by=engineer, config=config
    )
    runs.run_fail(run=run, error="no BTCUSDT 1h candles stored between the bounds\nmore detail")

    page = client_for(engineer).get(compare_url(two_versions)).text

    assert f"run #{run.pk} could not run: no BTCUSDT 1h candles stored between the bounds" in page
    assert "more detail" not in page
    assert "Run 2 comparison backtests" in page, "the failed one may be queued again"
