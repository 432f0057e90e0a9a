"""Decision pages state the power of the evidence in words (#28)."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from engine.backtest.deflated import minimum_detectable_sharpe
from models_registry.models import ModelState
from tests.registry.conftest import passing_validation_run

CHANGELIST = "admin:models_registry_modelversion_changelist"


def power(trials: int, n_bars: int = 2160) -> dict[str, Any]:
    return minimum_detectable_sharpe(n_bars=n_bars, trials=trials, bars_per_year=8766).to_dict()


def test_the_version_and_approve_pages_state_the_evidence_power(
    approver: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    stated = power(trials=5, n_bars=8640)
    run = passing_validation_run(
        version, metrics={"power": stated, "refit_folds": [{"fold": 1}, {"fold": 2}]}
    )
    client = Client()
    client.force_login(approver)
    page = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk]))
    assert page.status_code == 200
    sentence = stated["sentence"]
    assert "with 80% probability at N = 5 trials" in sentence
    assert sentence in page.text
    assert f"validation run #{run.pk}, 2 re-fitted folds" in page.text
    confirm = client.post(
        reverse(CHANGELIST), {"action": "approve_versions", "_selected_action": [version.pk]}
    )
    assert confirm.status_code == 200
    assert "Approve for production" in confirm.text
    assert sentence in confirm.text


def test_a_policy_run_is_preferred_and_no_power_is_said_plainly(
    approver: Any, version_factory: Any
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    client = Client()
    client.force_login(approver)
    url = reverse("admin:models_registry_modelversion_change", args=[version.pk])
    assert "no finished validation run states it yet" in client.get(url).text
    policy = passing_validation_run(version, metrics={"power": power(trials=2)})
    passing_validation_run(
        version, exploratory=True, passed=False, metrics={"power": power(trials=9)}
    )
    text = client.get(url).text
    assert power(trials=2)["sentence"] in text and f"run #{policy.pk})" in text
    assert power(trials=9)["sentence"] not in text


def folds_config(reproduction: dict[str, Any]) -> dict[str, Any]:
    return {
        "walk_forward_refit": {"fold_sharpes_per_bar": {"1": 0.01}, "reproduction": reproduction}
    }


def test_the_decision_pages_say_whether_the_file_reproduces(
    approver: Any, version_factory: Any
) -> None:
    """Beside the power: a file that does not reproduce is said in red, on the version page,
    the approve page and among the warnings; one that reproduces is said plainly."""
    differs = {"status": "differs", "bars": 6960, "max_difference": 0.17, "agreement": 0.75}
    folds = [{"fold": 1}, {"fold": 2}]
    client = Client()
    client.force_login(approver)
    for reproduction, said, warned in (
        (differs, "its file does NOT reproduce from its recorded training configuration", True),
        ({"status": "reproduces", "bars": 6960, "max_difference": 0.0, "agreement": 1.0},
         "its file reproduces from its recorded training configuration", False),
        ({"status": "close", "bars": 6960, "max_difference": 0.0019, "agreement": 0.992,
          "correlation": 0.99992},
         "its file reproduces from its recorded training configuration to within arithmetic",
         False),
    ):  # fmt: skip
        version = version_factory(ModelState.PAPER_TESTED)
        run = passing_validation_run(
            version,
            metrics={"power": power(trials=5, n_bars=8640), "refit_folds": folds},
            config=folds_config(reproduction),
        )
        url = reverse("admin:models_registry_modelversion_change", args=[version.pk])
        page = client.get(url).text
        assert f"<strong>Reproduction</strong>: {said}" in page
        assert ('class="reproduction differs" style="color:#dc3545"' in page) is warned
        assert (f"validation run #{run.pk}: {said}" in page) is warned  # among the warnings
        if warned:
            assert "on 75% of 6,960 bars of the last fold" in page
        confirm = client.post(
            reverse(CHANGELIST), {"action": "approve_versions", "_selected_action": [version.pk]}
        )
        assert said in confirm.text
