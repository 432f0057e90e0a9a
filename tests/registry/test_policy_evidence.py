"""Less evidence than the shipped policy's is a loosening, whatever form it takes (#28).

The shipped policy judges a version on re-fitted walk-forward folds; a policy that judges on
one window, or on fewer days of folds, has less power to tell an edge from luck, and every
page that lists a policy's loosenings must say so. More folds or longer folds are not looser.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models_registry.models import ValidationPolicy
from models_registry.policy import (
    ABSENT_MEANS,
    PolicyContentError,
    content_with,
    evidence_words,
    loosenings,
    policy_content_check,
    shipped_policy_content,
    window_policy,
)
from models_registry.policy_defaults import DEFAULT_VALIDATION_POLICY
from models_registry.verdicts import loosening_words

SHIPPED = shipped_policy_content()
SHIPPED_DAYS = DEFAULT_VALIDATION_POLICY["refit_folds"] * DEFAULT_VALIDATION_POLICY["fold_days"]


def evidence_loosening(content: dict) -> list[str]:
    return [loosening_words(i) for i in loosenings(content) if i.key == "evidence"]


def test_the_shipped_policy_judges_on_re_fitted_folds_and_loosens_nothing() -> None:
    assert DEFAULT_VALIDATION_POLICY["refit_folds"] >= 2  # two workers share the folds
    assert loosenings(SHIPPED) == []
    assert evidence_words(SHIPPED) == "3 re-fitted walk-forward folds of 290 days"


@given(days=st.floats(min_value=1, max_value=5000, allow_nan=False))
def test_one_window_is_looser_however_long_it_is(days: float) -> None:
    content = content_with(SHIPPED, {"refit_folds": 0, "days": days})
    assert evidence_loosening(content) == [
        f"judged on one {days:g}-day window (shipped: 3 re-fitted walk-forward folds of 290 days)"
    ]


@given(
    folds=st.integers(min_value=1, max_value=50),
    fold_days=st.floats(min_value=0.5, max_value=2000, allow_nan=False),
)
def test_folds_are_looser_exactly_when_they_hold_fewer_days_than_shipped(
    folds: int, fold_days: float
) -> None:
    content = content_with(SHIPPED, {"refit_folds": folds, "fold_days": fold_days})
    assert bool(evidence_loosening(content)) == (folds * fold_days < SHIPPED_DAYS)


def test_skill_against_cash_is_looser_and_an_unknown_benchmark_is_refused() -> None:
    content = content_with(SHIPPED, {"dsr_benchmark": "cash"})
    assert [loosening_words(i) for i in loosenings(content) if i.key == "dsr_benchmark"] == [
        "skill measured against cash (the strategy's own returns) (shipped: buy-and-hold): "
        "riding the market can count as skill"
    ]
    with pytest.raises(PolicyContentError, match="dsr_benchmark must be one of"):
        policy_content_check(content_with(SHIPPED, {"dsr_benchmark": "BUY_AND_HOLD"}))


@pytest.mark.django_db
def test_a_policy_stored_before_a_key_existed_reads_as_what_the_registry_did_then() -> None:
    """Not as the shipped value, which changed since: that would change a stored policy
    without anybody proposing or confirming it."""
    old = {k: v for k, v in SHIPPED.items() if k not in ABSENT_MEANS}
    stored = ValidationPolicy(scope="", number=1, label="old", content=old, content_hash="x")
    window = window_policy(stored)
    assert window["refit_folds"] == 0 and window["dsr_benchmark"] == "buy_and_hold"
    assert "judged on one 90-day window" in " ".join(loosening_words(i) for i in loosenings(old))
    # A proposal made from it is whole, and says what it keeps.
    proposed = policy_content_check(content_with(old, {"fee_bps": 12.0}))
    assert proposed["refit_folds"] == 0 and proposed["fold_days"] == 90
