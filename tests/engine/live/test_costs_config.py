"""The policy costs file shipped with a model (`<name>_costs.json`): read strictly, obeyed.

The class of defect: a host trading at costs other than the policy's, because the file was
read loosely (a string, NaN, a negative number, a missing or unknown key taken as something)
or because a flag quietly undercut it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.live.config import (
    COSTS_FILE_FIELDS,
    ConfigError,
    EngineCosts,
    PolicyCosts,
    costs_file,
    parse_costs_document,
    read_policy_costs,
    resolve_costs,
)

NAME = "btcusdt_sentiment"
HASH = "ab" * 32
WHERE = "costs file X"


def good_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "model_name": NAME,
        "fee_bps": 10.0,
        "slippage_bps": 5.0,
        "policy_id": 3,
        "policy_number": 2,
        "policy_label": "default",
        "policy_scope": "",
        "policy_hash": HASH,
    }
    document.update(changes)
    return document


def parse(document: Any) -> PolicyCosts:
    return parse_costs_document(json.dumps(document).encode(), where=WHERE, model_name=NAME)


def resolve(model_dir: Path, fee: float | None = None, slip: float | None = None) -> EngineCosts:
    return resolve_costs(
        model_dir,
        NAME,
        fee_bps=fee,
        slippage_bps=slip,
        default_fee_bps=10.0,
        default_slippage_bps=5.0,
    )


def test_the_file_name_is_the_one_deployment_ships() -> None:
    from deployment.targets import model_filenames

    assert costs_file(Path("/m"), NAME).name == model_filenames(NAME).costs


def test_a_good_document_is_read_exactly() -> None:
    costs = parse(good_document(fee_bps=7, slippage_bps=0))
    assert (costs.fee_bps, costs.slippage_bps) == (7.0, 0.0)
    assert (costs.policy_id, costs.policy_number, costs.policy_hash) == (3, 2, HASH)


# --------------------------------------------------------------------------- the number class

NOT_A_COST = st.one_of(
    st.floats(max_value=-1e-12, allow_nan=False),  # negative
    st.integers(min_value=10**309, max_value=10**400),  # past the largest float
    st.integers(max_value=-1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.text(max_size=8),  # "10", "", "NaN"
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["fee_bps", "slippage_bps"]), value=NOT_A_COST)
@example(field="fee_bps", value="10")
@example(field="slippage_bps", value=math.nan)
@example(field="fee_bps", value=-0.5)
@example(field="fee_bps", value=True)
@example(field="fee_bps", value=10**400)
def test_a_cost_that_is_not_a_finite_number_at_least_zero_is_refused(
    field: str, value: Any
) -> None:
    # json.dumps writes NaN and Infinity as bare tokens, as a careless writer would.
    with pytest.raises(ConfigError) as caught:
        parse(good_document(**{field: value}))
    message = str(caught.value)
    assert message.startswith(WHERE) and field in message
    assert "\n" not in message


@settings(max_examples=60)
@given(
    value=st.one_of(
        st.integers(min_value=0, max_value=10**6),
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    )
)
def test_every_finite_number_at_least_zero_is_read_as_itself(value: float) -> None:
    assert parse(good_document(fee_bps=value)).fee_bps == float(value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_refused_by_name(token: str) -> None:
    # JSON has no such numbers; Python's reader takes them unless told not to.
    raw = json.dumps(good_document()).replace('"fee_bps": 10.0', f'"fee_bps": {token}').encode()
    with pytest.raises(ConfigError, match=f"fee_bps must be a number, got {token} .not a"):
        parse_costs_document(raw, where=WHERE, model_name=NAME)


# --------------------------------------------------------------------------- the key class


@settings(max_examples=60)
@given(missing=st.sets(st.sampled_from(COSTS_FILE_FIELDS), min_size=1))
def test_a_missing_key_is_named(missing: set[str]) -> None:
    document = {k: v for k, v in good_document().items() if k not in missing}
    with pytest.raises(ConfigError, match="missing field") as caught:
        parse(document)
    assert next(key for key in COSTS_FILE_FIELDS if key in missing) in str(caught.value)


@settings(max_examples=60)
@given(extra=st.text(min_size=1, max_size=12).filter(lambda k: k not in COSTS_FILE_FIELDS))
@example(extra="fee")
@example(extra="fee_bps ")
def test_an_unknown_key_is_refused_by_name(extra: str) -> None:
    with pytest.raises(ConfigError, match="unknown field") as caught:
        parse(good_document(**{extra: 0}))
    assert repr(extra) in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"policy_hash": "AB" * 32}, "policy_hash"),
        ({"policy_hash": "ab" * 31}, "policy_hash"),
        ({"policy_hash": 5}, "policy_hash"),
        ({"policy_id": 0}, "policy_id"),
        ({"policy_id": "3"}, "policy_id"),
        ({"policy_number": 1.0}, "policy_number"),
        ({"policy_number": True}, "policy_number"),
        ({"policy_label": None}, "policy_label"),
        ({"model_name": "ethusdt_price"}, "model_name"),
    ],
)
def test_other_fields_are_checked_by_name(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse(good_document(**changes))


# --------------------------------------------------------------------------- the text class


@settings(max_examples=80)
@given(raw=st.binary(max_size=64))
def test_any_bytes_give_costs_or_one_line_naming_the_file(raw: bytes) -> None:
    try:
        parse_costs_document(raw, where=WHERE, model_name=NAME)
    except ConfigError as error:
        assert str(error).startswith(WHERE) and "\n" not in str(error)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (json.dumps(good_document()).encode("utf-16"), "not UTF-8"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b"", "invalid JSON"),
        (b'{"fee_bps": 10', "invalid JSON"),
        (("\ufeff" + json.dumps(good_document())).encode(), "invalid JSON"),  # a BOM
        (b'{"fee_bps": 0, "fee_bps": 10}', "'fee_bps' appears twice"),
        (b'{"fee_bps": 0x10}', "invalid JSON"),
    ],
)
def test_text_that_is_not_a_json_object_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_costs_document(raw, where=WHERE, model_name=NAME)


# --------------------------------------------------------------------------- resolving


def write(model_dir: Path, document: dict[str, Any]) -> Path:
    path = costs_file(model_dir, NAME)
    path.write_text(json.dumps(document))
    return path


def test_without_a_file_the_flags_or_defaults_apply_and_say_so(tmp_path: Path) -> None:
    assert read_policy_costs(tmp_path, NAME) is None
    defaults = resolve(tmp_path)
    assert (defaults.fee_bps, defaults.source, defaults.policy) == (10.0, "engine defaults", None)
    assert not defaults.at_policy
    flagged = resolve(tmp_path, fee=0.0)
    assert (flagged.fee_bps, flagged.slippage_bps, flagged.source) == (0.0, 5.0, "flags")
    assert flagged.record()["policy_hash"] is None


def test_the_file_costs_are_used(tmp_path: Path) -> None:
    path = write(tmp_path, good_document(fee_bps=12.5, slippage_bps=7))
    costs = resolve(tmp_path)
    assert (costs.fee_bps, costs.slippage_bps, costs.source) == (12.5, 7.0, "policy")
    assert costs.at_policy and costs.path == path
    record = costs.record()
    assert record["policy_hash"] == HASH and record["at_policy"] is True
    assert "policy #3" in costs.describe() and str(path) in costs.describe()


@settings(max_examples=60)
@given(
    fee=st.floats(min_value=0, max_value=50, allow_nan=False),
    slip=st.floats(min_value=0, max_value=50, allow_nan=False),
)
def test_a_flag_below_the_file_is_refused_at_or_above_it_is_used(
    tmp_path_factory: pytest.TempPathFactory, fee: float, slip: float
) -> None:
    model_dir = tmp_path_factory.mktemp("costs")
    write(model_dir, good_document(fee_bps=10.0, slippage_bps=5.0))
    if fee < 10.0 or slip < 5.0:
        with pytest.raises(ConfigError, match="below the policy's") as caught:
            resolve(model_dir, fee=fee, slip=slip)
        assert "\n" not in str(caught.value)
        return
    costs = resolve(model_dir, fee=fee, slip=slip)
    assert (costs.fee_bps, costs.slippage_bps) == (fee, slip)
    assert costs.at_policy == (fee == 10.0 and slip == 5.0)
    assert costs.source == ("policy" if costs.at_policy else "flags above policy")


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_flag_that_is_no_cost_is_refused(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigError, match="--fee-bps"):
        resolve(tmp_path, fee=value)


def test_a_file_the_engine_cannot_read_is_an_error_not_a_default(tmp_path: Path) -> None:
    costs_file(tmp_path, NAME).mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError, match="cannot read"):
        resolve(tmp_path)
