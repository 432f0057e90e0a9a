"""Trust nothing that feeds a gate (issue 25): policy as four-eyes data, paper at policy costs,
looks counted, too-good-to-be-true warned, lineage verified at registration.

Same tiny store and model as tests/registry_commands/test_run_backtest.py (1,000 real BTCUSDT
hours from 2024-01-01, a model trained on the first 600).
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from models_registry import selectors
from models_registry.models import (
    AuditEvent,
    ModelState,
    ModelTrial,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationPolicy,
    ValidationRun,
)
from models_registry.policy import LEAKAGE_WARNING, policy_in_force
from models_registry.services.lineage import LineageRefused, lineage_verify
from models_registry.services.model_versions import RegistrationRefused, model_version_register
from models_registry.services.paper import PaperOptions, paper_execute, paper_run_create_inline
from models_registry.services.policies import (
    PolicyChangeRefused,
    validation_policy_confirm,
    validation_policy_propose,
)
from tests.registry_commands.test_run_backtest import GENEROUS_GATES, backtest, backtest_json
from tests.support.policy import ONE_WINDOW, gates_dotted, policy_people, policy_set

PAPER_GATES = {"min_bars": 24, "max_drawdown": 1.0, "max_divergence": 1e-9}


def put_generous_gates_in_force() -> ValidationPolicy:
    """What the team would do to judge a tiny model: a confirmed, four-eyes policy."""
    return policy_set(gates_dotted({**GENEROUS_GATES, "paper": PAPER_GATES}), label="tiny")


# --- 1. the environment is not the policy --------------------------------------------------------


@pytest.mark.django_db
def test_environment_override_run_is_exploratory_and_never_validates(
    version: ModelVersion, settings: Any
) -> None:
    in_force = policy_in_force(version.name)  # the registry's policy (seeded at first use)
    # The probe: every money gate off and zero costs, set on the command line.
    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = {
        "days": 10,
        "fee_bps": 0,
        "slippage_bps": 0,
        **ONE_WINDOW,
    }

    # Judged under the registry's (shipped) gates the tiny model fails, as it should...
    backtest("ml_basic", "--days", "10", "--model", version.name, gates_fail=True)
    run = ValidationRun.objects.get()
    version.refresh_from_db()
    assert run.exploratory is True and version.state == ModelState.TRAINED
    assert any("TRADEBOT_GATES" in r and "min_dsr" in r for r in run.exploratory_reasons)
    assert any("fee_bps" in r for r in run.exploratory_reasons)
    assert run.policy_id == in_force.pk and run.policy_hash == in_force.content_hash

    # ...and where the policy in force lets it pass, the environment still cannot validate it.
    generous = put_generous_gates_in_force()
    settings.TRADEBOT_GATES = {"validation": {"min_trades": 1}}
    backtest("ml_basic", "--days", "10", "--model", version.name)
    run = ValidationRun.objects.order_by("-id").first()
    version.refresh_from_db()
    assert run is not None and run.passed is True and run.exploratory is True
    assert version.state == ModelState.TRAINED
    assert any("gates.validation.min_trades=1" in r for r in run.exploratory_reasons)
    assert run.policy_id == generous.pk and run.policy_hash == generous.content_hash
    # The environment wrote no policy: the seed and the confirmed generous one only.
    assert ValidationPolicy.objects.count() == 2


@pytest.mark.django_db
def test_the_same_gates_put_in_force_by_two_people_do_validate(
    version: ModelVersion, settings: Any
) -> None:
    """The control for the test above: the run itself can pass, under a confirmed policy."""
    policy = put_generous_gates_in_force()

    backtest("ml_basic", "--days", "10", "--model", version.name)

    run = ValidationRun.objects.get()
    version.refresh_from_db()
    assert run.exploratory is False, run.exploratory_reasons
    assert version.state == ModelState.VALIDATED
    assert run.policy_id == policy.pk and run.policy_hash == policy.content_hash
    assert run.config["policy_in_force"]["hash"] == policy.content_hash


# --- 2. four eyes --------------------------------------------------------------------------------


def admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_policy_change_in_the_admin_needs_two_people_and_audits_old_and_new(
    media: Path,
) -> None:
    first, second = policy_people()
    before = policy_in_force("")
    content = {**before.content, "fee_bps": 2.0}
    add = reverse("admin:models_registry_validationpolicy_add")
    changelist = reverse("admin:models_registry_validationpolicy_changelist")

    page = admin_client(first).get(add)
    assert page.status_code == 200 and "fee_bps" in page.content.decode()
    response = admin_client(first).post(
        add,
        {"scope": "", "label": "cheaper", "content": json.dumps(content), "comment": "why not"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    proposal = ValidationPolicy.objects.get(label="cheaper")
    # A proposal alone changes nothing.
    assert policy_in_force("").pk == before.pk

    # The proposer cannot confirm their own proposal.
    admin_client(first).post(
        changelist,
        {"action": "confirm_proposals", "_selected_action": [proposal.pk]},
        follow=True,
    )
    assert policy_in_force("").pk == before.pk
    assert not AuditEvent.objects.filter(event_type="policy_confirmed").exists()

    # A second person can.
    admin_client(second).post(
        changelist,
        {"action": "confirm_proposals", "_selected_action": [proposal.pk]},
        follow=True,
    )
    assert policy_in_force("").pk == proposal.pk
    event = AuditEvent.objects.get(event_type="policy_confirmed")
    assert event.actor == second
    assert event.data["old"]["fee_bps"] == before.content["fee_bps"]
    assert event.data["new"]["fee_bps"] == 2.0
    assert event.data["proposed_by"] == first.username
    proposed = AuditEvent.objects.get(event_type="policy_proposed")
    assert proposed.actor == first and proposed.data["new"]["fee_bps"] == 2.0


@pytest.mark.django_db
def test_a_proposal_needs_the_permission_and_a_stale_one_cannot_be_confirmed() -> None:
    first, second = policy_people()
    nobody = User.objects.create_user("no-permission")
    base = policy_in_force("").content
    with pytest.raises(PolicyChangeRefused, match="lacks the permission"):
        validation_policy_propose(scope="", content=base, proposed_by=nobody)
    with pytest.raises(PolicyChangeRefused, match="signed-in user"):
        validation_policy_propose(scope="", content=base, proposed_by=None)
    with pytest.raises(PolicyChangeRefused, match="days"):
        validation_policy_propose(scope="", content={**base, "days": 0}, proposed_by=first)

    a = validation_policy_propose(scope="", content={**base, "fee_bps": 12}, proposed_by=first)
    b = validation_policy_propose(scope="", content={**base, "fee_bps": 13}, proposed_by=first)
    validation_policy_confirm(policy=a, confirmed_by=second)
    # b was proposed against the policy a replaced: confirming it would silently undo a.
    with pytest.raises(PolicyChangeRefused, match="propose it again"):
        validation_policy_confirm(policy=b, confirmed_by=second)
    with pytest.raises(PolicyChangeRefused, match="already confirmed"):
        validation_policy_confirm(policy=a, confirmed_by=second)
    assert policy_in_force("").content["fee_bps"] == 12


@pytest.mark.django_db
def test_policy_rows_are_append_only_and_content_hashed() -> None:
    from models_registry.models import RegistryError
    from models_registry.policy import policy_content_hash

    policy = policy_in_force("")
    assert policy.content_hash == policy_content_hash(policy.content)
    policy.comment = "edited"
    with pytest.raises(RegistryError):
        policy.save()
    with pytest.raises(RegistryError):
        ValidationPolicy.objects.update(comment="edited")


@pytest.mark.django_db
def test_a_per_model_policy_overrides_the_default_for_that_model_only(
    version: ModelVersion,
) -> None:
    from models_registry.policy import cost_policy_for

    policy_set({"fee_bps": 25.0}, scope=version.name, label="dearer")
    assert cost_policy_for(version.name).fee_bps == 25.0
    assert cost_policy_for("some_other_model").fee_bps == policy_in_force("").content["fee_bps"]


# --- 5. paper runs at the policy's costs ---------------------------------------------------------


def validated(version: ModelVersion) -> ModelVersion:
    put_generous_gates_in_force()
    backtest("ml_basic", "--days", "10", "--model", version.name)
    version.refresh_from_db()
    assert version.state == ModelState.VALIDATED
    return version


def paper_trade(version: ModelVersion, **options: Any) -> PaperTradingRun:
    run = paper_run_create_inline(
        model_version=version, requested_by=None, options=PaperOptions(**options)
    )
    return paper_execute(run)


@pytest.mark.django_db
def test_a_zero_fee_paper_run_is_exploratory_and_moves_nothing(version: ModelVersion) -> None:
    validated(version)

    run = paper_trade(version, days=14, fee_bps=0.0)

    version.refresh_from_db()
    assert run.status == RunStatus.PASSED and run.passed is True, run.gate_results
    assert run.exploratory is True
    assert any("fee_bps 0 is below the policy's" in r for r in run.exploratory_reasons)
    assert version.state == ModelState.VALIDATED
    assert selectors.passing_replay_run(version) is None  # not the pre-check staging needs

    # The control: the same run at the policy's costs is the pre-check staging asks for.
    at_policy = paper_trade(version, days=14)
    version.refresh_from_db()
    assert at_policy.exploratory is False and at_policy.metrics["run"]["fee_bps"] == 10.0
    assert at_policy.policy_hash == policy_in_force(version.name).content_hash
    assert selectors.passing_replay_run(version) == at_policy


# --- 6. too good to be true ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sharpe_above_the_ceiling_shows_check_for_leakage(version: ModelVersion) -> None:
    from models_registry.selectors_policy import plausibility_of_run

    put_generous_gates_in_force()
    look = backtest_json("ml_basic", "--days", "10", "--model", version.name, "--no-db")
    sharpe = float(look["metrics"]["sharpe"])

    # The control: a ceiling above this run's Sharpe ratio, and the same run warns of nothing.
    policy_set({"plausibility.max_annual_sharpe": sharpe + 1.0}, label="high ceiling")
    summary = backtest_json("ml_basic", "--days", "10", "--model", version.name, "--no-db")
    assert summary["plausibility"] == []

    # A ceiling below this run's Sharpe ratio, put in force by two people: the next run warns.
    policy_set({"plausibility.max_annual_sharpe": sharpe - 1.0}, label="low ceiling")
    summary = backtest_json("ml_basic", "--days", "10", "--model", version.name)
    again = ValidationRun.objects.order_by("-id").first()
    assert again is not None
    warnings = plausibility_of_run(again)
    assert warnings and LEAKAGE_WARNING in warnings[0]
    assert any(LEAKAGE_WARNING in w for w in summary["plausibility"])
    page = admin_client(policy_people()[0]).get(
        reverse("admin:models_registry_validationrun_change", args=[again.pk])
    )
    assert LEAKAGE_WARNING in page.content.decode()
    # Not a gate unless the policy makes it one.
    assert "plausible" not in [g["name"] for g in again.gate_results]


# --- 4. every look is counted --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_no_db_look_at_a_registry_version_raises_n(version: ModelVersion) -> None:
    put_generous_gates_in_force()
    first = backtest_json("ml_basic", "--days", "10", "--model", version.name, "--no-db")
    looks = ModelTrial.objects.filter(model_name=version.name, detail__look=True)
    assert looks.count() == 1
    second = backtest_json("ml_basic", "--days", "10", "--model", version.name, "--no-db")
    assert second["trials"]["trials"] == first["trials"]["trials"] + 1

    backtest("ml_basic", "--days", "10", "--model", version.name)
    run = ValidationRun.objects.get()
    # Its own training, the two looks, and itself.
    assert run.config["trials"]["trials"] >= 4
    assert run.config["trials"]["by_kind"].get("exploratory_validation", 0) >= 2


# --- 3. lineage verified at registration -------------------------------------------------------

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def doctored_copy(model_dir: Path, folder: Path, change: Any) -> Path:
    shutil.copytree(model_dir, folder)
    path = next(folder.glob("*_metadata.json"))
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
    return folder


def shifted(metadata: dict[str, Any], hours: int) -> dict[str, Any]:
    """Every date of the account moved by the same amount: internally consistent."""
    delta = pd.Timedelta(hours=hours)
    out = copy.deepcopy(metadata)
    for split in out["splits"].values():
        for key, value in list(split.items()):
            if key.endswith("_bar"):
                split[key] = (pd.Timestamp(value) + delta).isoformat()
    for key in ("start", "end"):
        out["data"][key] = (pd.Timestamp(out["data"][key]) + delta).isoformat()
    out["out_of_sample_from"] = (pd.Timestamp(out["out_of_sample_from"]) + delta).isoformat()
    return out


def real_metadata(model_dir: Path) -> dict[str, Any]:
    return json.loads(next(model_dir.glob("*_metadata.json")).read_text())


@pytest.mark.django_db
def test_the_honest_account_of_the_tiny_model_is_verified_against_the_store(
    model_dir: Path, store: Path
) -> None:
    check = lineage_verify(
        real_metadata(model_dir), symbol="BTCUSDT", interval="1h", now=NOW, data_dir=store
    )
    assert check.verified and check.store_hash_checked, check.reasons


@pytest.mark.django_db
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hours=st.integers(min_value=-20_000, max_value=600).filter(lambda h: h != 0))
def test_an_account_shifted_by_any_amount_is_refused_or_unverified(
    model_dir: Path, store: Path, hours: int
) -> None:
    metadata = shifted(real_metadata(model_dir), hours)
    try:
        check = lineage_verify(metadata, symbol="BTCUSDT", interval="1h", now=NOW, data_dir=store)
    except LineageRefused as exc:
        assert "\n" not in str(exc)
        return
    assert not check.verified  # then it is judged only on bars after its registration


SPLIT_FIELDS = [
    (split, key)
    for split in ("train", "validation", "test")
    for key in ("first_input_bar", "first_decision_bar", "last_decision_bar", "last_target_bar")
]


@pytest.mark.django_db
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dropped=st.lists(
        st.sampled_from(
            [
                *(f"splits.{s}.{k}" for s, k in SPLIT_FIELDS),
                "splits.train",
                "splits.validation",
                "splits",
                "data.content_hash",
                "data.start",
                "data.end",
            ]
        ),
        min_size=1,
        max_size=4,
    )
)
def test_an_account_with_fields_missing_is_refused_or_unverified(
    model_dir: Path, store: Path, dropped: list[str]
) -> None:
    metadata = real_metadata(model_dir)
    for dotted in dropped:
        *parents, last = dotted.split(".")
        node: Any = metadata
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    try:
        check = lineage_verify(metadata, symbol="BTCUSDT", interval="1h", now=NOW, data_dir=store)
    except LineageRefused:
        return
    dropped_decision_bars_only = all("decision_bar" in d for d in dropped)
    assert not check.verified or dropped_decision_bars_only


@pytest.mark.django_db
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.sampled_from(SPLIT_FIELDS), b=st.sampled_from(SPLIT_FIELDS))
def test_an_account_with_dates_out_of_order_is_refused(
    model_dir: Path, store: Path, a: tuple[str, str], b: tuple[str, str]
) -> None:
    metadata = real_metadata(model_dir)
    splits = metadata["splits"]
    first, second = splits[a[0]][a[1]], splits[b[0]][b[1]]
    if first == second:
        return
    splits[a[0]][a[1]], splits[b[0]][b[1]] = second, first
    with pytest.raises(LineageRefused):
        lineage_verify(metadata, symbol="BTCUSDT", interval="1h", now=NOW, data_dir=store)


@pytest.mark.django_db
def test_empty_splits_register_only_to_be_judged_after_registration(
    media: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = doctored_copy(model_dir, tmp_path / "empty", lambda m: m.update(splits={}))
    registered_from = datetime.now(tz=UTC)
    version, _ = model_version_register(
        source_dir=folder, registered_by=None, allow_missing_conditions="a tiny test model"
    )

    assert version.first_unseen_at is not None and version.first_unseen_at >= registered_from
    assert version.out_of_sample_from == version.first_unseen_at
    assert version.metadata["lineage_check"]["verified"] is False
    # It cannot be validated on the stored (2024) bars it may have been trained on.
    with pytest.raises(Exception, match=r"no data|no stored|holds no"):
        backtest("ml_basic", "--days", "10", "--model", version.name)
    # Its page says so.
    page = admin_client(policy_people()[0]).get(
        reverse("admin:models_registry_modelversion_change", args=[version.pk])
    )
    assert "Lineage NOT verified" in page.content.decode()


@pytest.mark.django_db
def test_a_shifted_account_inside_the_store_is_refused_and_leaves_nothing(
    media: Path, model_dir: Path, tmp_path: Path
) -> None:
    def shift(metadata: dict[str, Any]) -> None:
        metadata.update(shifted(metadata, 24 * 3))

    folder = doctored_copy(model_dir, tmp_path / "shifted", shift)
    with pytest.raises(RegistrationRefused, match=r"data\.content_hash") as refused:
        model_version_register(
            source_dir=folder, registered_by=None, allow_missing_conditions="a tiny test model"
        )
    assert "\n" not in str(refused.value)
    assert ModelVersion.objects.count() == 0
    assert not (media / "artifacts").exists() or not any((media / "artifacts").iterdir())


# --- 7. every decision shows the policy it was made under --------------------------------------


@pytest.mark.django_db
def test_the_version_page_names_the_policy_and_lists_what_it_loosens_in_red(
    version: ModelVersion,
) -> None:
    from models_registry.selectors_policy import (
        default_policy_verdict,
        loosened_against_defaults,
        policy_summary,
    )

    policy = validated(version).validation_runs.get().policy
    assert policy is not None and policy.label == "tiny"
    loosened = [item.key for item in loosened_against_defaults(policy)]
    assert (
        "gates.validation.min_dsr" in loosened
        and "gates.validation.beats_buy_and_hold_by" in loosened
    )
    assert "fee_bps" not in loosened  # the costs are the shipped ones

    verdict = default_policy_verdict(version.validation_runs.get())
    assert verdict is not None and not verdict.passed  # a tiny model has no edge
    assert verdict.text.startswith("the default policy would refuse: ")
    assert "DSR" in verdict.text

    summary = policy_summary(version)
    assert summary["name"].startswith('"tiny" v2') and summary["loosened"]
    page = (
        admin_client(policy_people()[0])
        .get(reverse("admin:models_registry_modelversion_change", args=[version.pk]))
        .content.decode()
    )
    assert "Looser than the shipped defaults" in page
    assert "deflated Sharpe ratio gate switched off" in page
    assert "the default policy would refuse" in page
    assert "color:#dc3545" in page


@pytest.mark.django_db
def test_under_the_shipped_policy_nothing_is_listed_as_loosened() -> None:
    from models_registry.selectors_policy import loosened_against_defaults

    assert loosened_against_defaults(policy_in_force("")) == []


@pytest.mark.django_db
def test_sibling_trainings_on_the_same_history_count_for_the_dsr(version: ModelVersion) -> None:
    """Four versions trained on the same bars, the best one recorded: N counts all four."""
    from models_registry.services.trials import trials_for_window, version_data_window

    start, end, known = version_data_window(version)
    assert known
    first_unseen = end + pd.Timedelta(hours=1)  # the window starts after the data ends
    alone = trials_for_window(
        model_name=version.name,
        version=version,
        start=first_unseen,
        stop=first_unseen + pd.Timedelta(days=10),
    )
    for _ in range(3):  # the siblings' training trials (their versions are not needed here)
        ModelTrial.objects.create(
            model_name=version.name, kind=ModelTrial.KIND_TRAINING, window_start=start,
            window_end=end,
        )  # fmt: skip
    counted = trials_for_window(
        model_name=version.name,
        version=version,
        start=first_unseen,
        stop=first_unseen + pd.Timedelta(days=10),
    )
    assert counted.trials == alone.trials + 3


@pytest.mark.django_db
def test_a_no_db_look_through_a_copied_folder_is_counted_under_its_model_name(
    version: ModelVersion, model_dir: Path, store: Path, tmp_path: Path
) -> None:
    """Copying a version's files to a folder does not make the look free."""
    folder = tmp_path / "copy"
    shutil.copytree(model_dir, folder)
    backtest_json(
        "ml_basic", "--days", "10", "--no-db", "--model-path", str(folder),
        "--data-dir", str(store), "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    look = ModelTrial.objects.get(detail__look=True)
    assert look.model_name == version.name and look.model_version is None
    assert AuditEvent.objects.filter(event_type="policy_window_looked").count() == 1

    # A look at bars before the policy window (the in-sample year) is not a trial.
    backtest_json(
        "ml_basic", "--start", "2024-01-05", "--days", "5", "--no-db", "--allow-in-sample",
        "--model-path", str(folder), "--data-dir", str(store),
        "--output-dir", str(tmp_path / "out2"),
    )  # fmt: skip
    assert ModelTrial.objects.filter(detail__look=True).count() == 1


@pytest.mark.django_db
def test_paper_trade_version_at_zero_fee_says_it_is_exploratory(version: ModelVersion) -> None:
    from io import StringIO

    from django.core.management import call_command

    validated(version)
    out = StringIO()
    call_command(
        "paper_trade_version", version.name, "--version", "1", "--fee-bps", "0", stdout=out
    )
    text = out.getvalue()
    assert (
        "EXPLORATORY run (it can never move a version): fee_bps 0 is below the policy's 10" in text
    )
    assert "the version stays validated" in text
    version.refresh_from_db()
    assert version.state == ModelState.VALIDATED
