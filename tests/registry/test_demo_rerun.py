"""`make demo` twice on the same state: the second run continues or serves, never crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models_registry.demo import resume_point
from models_registry.models import ModelState
from tests.conftest import PROJECT_ROOT


@pytest.mark.django_db
def test_a_half_walked_version_is_rejected_on_record_and_its_step_runs_again(
    approver, version_factory
) -> None:
    said: list[str] = []
    users = {"approver": approver}
    assert resume_point(users=users, say=said.append) == (0, None)

    first = version_factory(ModelState.IN_PRODUCTION, name="btcusdt_sentiment")
    half = version_factory(ModelState.PAPER_TESTED, name="btcusdt_sentiment")
    start, version = resume_point(users=users, say=said.append)
    half.refresh_from_db()
    assert half.state == ModelState.REJECTED and any(str(half) in line for line in said)
    assert (start, version) == (1, first)  # the second version's walk runs again

    version_factory(ModelState.RETIRED, name="btcusdt_sentiment")  # a newer one replaced it
    start, _version = resume_point(users=users, say=said.append)
    assert start == 2  # the rollback comes next


@pytest.mark.slow
def test_make_demo_twice_on_the_same_state_ends_well_both_times(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(TRADEBOT_VAR_DIR=str(tmp_path / "var"), TRADEBOT_DEMO_EPOCHS="1")
    runs = []
    for _ in range(2):
        runs.append(
            subprocess.run(
                [sys.executable, "manage.py", "run_demo", "--no-serve"], cwd=PROJECT_ROOT,
                env=env, capture_output=True, text=True, timeout=1800,
            )
        )  # fmt: skip
    first, second = runs
    assert first.returncode == 0, first.stderr[-2000:]
    assert "audit chain verified" in first.stdout
    assert second.returncode == 0, second.stderr[-2000:]
    assert "already walked the lifecycle" in second.stdout
    assert "Traceback" not in second.stderr and "DemoStepFailed" not in second.stderr
