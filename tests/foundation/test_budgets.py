"""The one setting that scales every budget for real processes."""

from __future__ import annotations

import pytest

from tests.support.budgets import SCALE_VARIABLE, budget, time_scale


def test_budgets_are_as_written_on_a_quiet_machine(monkeypatch) -> None:
    monkeypatch.delenv(SCALE_VARIABLE, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert time_scale() == 1.0
    assert budget(5) == 5.0


def test_ci_scales_budgets_unless_the_setting_says_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv(SCALE_VARIABLE, raising=False)
    assert budget(5) == 15.0
    monkeypatch.setenv(SCALE_VARIABLE, "2.5")
    assert budget(3) == 8.0  # whole seconds, rounded up


@pytest.mark.parametrize("raw", ["fast", "0.5", "nan", "-1"])
def test_a_bad_scale_is_refused_by_name(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(SCALE_VARIABLE, raw)
    with pytest.raises(ValueError, match=SCALE_VARIABLE):
        time_scale()
