"""Monitoring fixtures: a tiny real model, a candle store that grows, a version in production.

The store starts with real BTCUSDT hours from 2024-01-01; ``grow_store`` imports the next
real hours, as the hourly refresh would, so each scheduled run has new bars to judge.
``walk_to_production`` takes a registered version to ``in_production`` through the
lifecycle services with the evidence each gate asks for (no deployment is run).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.utils import timezone

from engine.data import import_klines_csv
from models_registry import roles
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import lifecycle
from models_registry.services.model_versions import model_version_create
from tests.registry.conftest import make_user
from tests.support.gates import loose_validation
from tests.support.tiny_world import build_btc_store, tiny_full_model, write_csv_slice
from tests.support.walk import create_in

FIRST_BAR = "2024-01-01 00:00"
INITIAL_ROWS = 800
BASELINE_HOURS = 100
# Generous gates so real data passes; strict ones fail any run (sharpe must rise by 1000).
PASSING_GATES = {
    "validation": loose_validation(min_sharpe=-1000, max_drawdown=1.0, min_trades=0, min_bars=24),
    "drift": {
        "max_sharpe_drop": 1000.0,
        "max_hit_rate_drop": 1.0,
        "max_drawdown": 1.0,
        "max_live_divergence": 0.01,
        "min_new_bars": 48,
    },
}
FAILING_GATES = {
    "validation": PASSING_GATES["validation"],
    "drift": {**PASSING_GATES["drift"], "max_sharpe_drop": -1000.0},
}
BASELINE_METRICS = {"sharpe": 0.0, "win_rate": 0.0, "max_drawdown": 0.05, "n_trades": 5}


@pytest.fixture(scope="session")
def base_store(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("monitoring_store")
    return build_btc_store(shared_data_dir, folder, start=FIRST_BAR, rows=INITIAL_ROWS)


@pytest.fixture(scope="session")
def model_dir(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_full_model(shared_data_dir, tmp_path_factory)


@pytest.fixture
def store(base_store: Path, tmp_path: Path) -> Path:
    """Each test's own copy: tests grow it."""
    return Path(shutil.copytree(base_store, tmp_path / "store"))


def grow_store(store: Path, shared_data_dir: Path, total_rows: int, folder: Path) -> None:
    """Import the real hours up to ``total_rows`` from the first bar, as a refresh would."""
    csv = write_csv_slice(
        shared_data_dir / "BTCUSDT-1h.csv", folder / f"btc-{total_rows}.csv", FIRST_BAR, total_rows
    )
    import_klines_csv(csv, store, symbol="BTCUSDT", interval="1h")


@pytest.fixture
def media(tmp_path: Path, settings: Any, store: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRADEBOT_DATA_DIR = store
    settings.TRADEBOT_GATES = PASSING_GATES
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.MEDIA_ROOT


def worker_env(media: Path, store: Path, gates: dict[str, Any]) -> dict[str, str]:
    return {
        "MEDIA_ROOT": str(media),
        "TRADEBOT_DATA_DIR": str(store),
        "TRADEBOT_GATES": json.dumps(gates),
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }


@dataclass
class People:
    engineer: Any
    approver: Any
    deployer: Any


@pytest.fixture
def people(db: None) -> People:
    return People(
        engineer=make_user("erin_engineer", roles.ML_ENGINEER),
        approver=make_user("alice_approver", roles.APPROVER),
        deployer=make_user("dora_deployer", roles.DEPLOYER),
    )


@pytest.fixture
def production_target(db: None, tmp_path: Path) -> DeploymentTarget:
    """A local production target whose install root is a folder of this test."""
    root = tmp_path / "prod-host"
    (root / "var" / "journal").mkdir(parents=True)
    return DeploymentTarget.objects.create(
        name="production-local",
        environment=Environment.PRODUCTION,
        is_local=True,
        install_root=str(root),
    )


def out_of_sample_start(version: ModelVersion) -> pd.Timestamp:
    return pd.Timestamp(version.out_of_sample_from).tz_convert("UTC").ceil("1h")


def walk_to_production(
    version: ModelVersion,
    people: People,
    production: DeploymentTarget,
    *,
    baseline_metrics: dict[str, Any] | None = None,
    baseline_hours: int = BASELINE_HOURS,
) -> ModelVersion:
    """trained -> in_production through every lifecycle service, with recorded evidence.

    The baseline validation covers ``baseline_hours`` from the first unseen bar, so the
    first scheduled window starts right after it.
    """
    start = out_of_sample_start(version)
    now = timezone.now()
    baseline = create_in(
        ValidationRun,
        RunStatus.PASSED,
        model_version=version,
        passed=True,
        in_sample=False,
        window_start=start,
        window_end=start + pd.Timedelta(hours=baseline_hours - 1),
        metrics=baseline_metrics or BASELINE_METRICS,
        gate_results=[{"name": "min_sharpe", "passed": True}],
        finished_at=now,
    )
    lifecycle.model_version_validate(
        model_version=version, validation_run=baseline, actor=people.engineer
    )
    create_in(  # the replay pre-check staging asks for
        PaperTradingRun,
        RunStatus.PASSED,
        model_version=version,
        passed=True,
        bars=24 * 15,
        finished_at=now,
    )
    staging, _ = DeploymentTarget.objects.get_or_create(
        name="staging-local", defaults={"environment": Environment.STAGING, "is_local": True}
    )
    staged_by = _succeeded(version, staging, people.engineer)
    lifecycle.model_version_stage(
        model_version=version, deployment=staged_by, actor=people.engineer
    )
    forward = create_in(  # its forward paper run on staging, passed
        PaperTradingRun,
        RunStatus.PASSED,
        model_version=version,
        mode=PaperTradingRun.MODE_FORWARD,
        target=staging,
        deployment=staged_by,
        config={"model_sha256": version.onnx_sha256},
        passed=True,
        bars=24 * 15,
        finished_at=now,
    )
    lifecycle.model_version_mark_paper_tested(
        model_version=version, paper_run=forward, actor=people.engineer
    )
    approval = lifecycle.model_version_approve(
        model_version=version, approved_by=people.approver, comment="checked the backtest"
    )
    deployment = _succeeded(version, production, people.deployer, approval=approval)
    lifecycle.model_version_mark_in_production(
        model_version=version, deployment=deployment, actor=people.deployer
    )
    return ModelVersion.objects.get(pk=version.pk)


def _succeeded(
    version: ModelVersion, target: DeploymentTarget, by: Any, **extra: Any
) -> Deployment:
    now = timezone.now()
    return create_in(
        Deployment,
        DeploymentStatus.SUCCEEDED,
        target=target,
        model_version=version,
        sha256=version.onnx_sha256,
        compatibility={"passed": True},
        requested_by=by,
        started_at=now - timedelta(seconds=5),
        finished_at=now,
        **extra,
    )


@pytest.fixture
def production_version(
    media: Path, model_dir: Path, people: People, production_target: DeploymentTarget
) -> ModelVersion:
    version = model_version_create(source_dir=model_dir, created_by=people.engineer)
    return walk_to_production(version, people, production_target)
