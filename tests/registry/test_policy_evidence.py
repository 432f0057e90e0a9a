"""Less evidence than the shipped policy's is a loosening, whatever form it takes (#28).

The shipped policy judges a version on re-fitted walk-forward folds; a policy that judges on
one window, or on fewer days of folds, has less power to tell an edge from luck, and every
page that lists a policy's loosenings must say so. More folds or longer folds are not looser.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models_registry.policy import (
    content_with,
    evidence_words,
    loosenings,
    shipped_policy_content,
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
