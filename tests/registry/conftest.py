"""Registry fixtures: people in each role, artifact folders, and versions walked to any state.

Reused by the admin tests. Users are built in the Django groups the roles
migration creates (``models_registry.roles``); ``ensure_roles`` recreates the
groups when a transactional test has flushed them.

``version_factory("staged")`` builds a version from a real (tiny) ONNX file
and walks it through the lifecycle services with the evidence each gate asks
for, so a version in state X got there exactly as it would in production.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from models_registry import roles, selectors
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import lifecycle
from models_registry.services.model_versions import model_version_create
from tests.support.walk import create_in

OUT_OF_SAMPLE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
_unique_weights = itertools.count(1)


# --- artifacts -----------------------------------------------------------------


def tiny_onnx_bytes(weight: float = 0.5, *, window: int = 4, features: int = 3) -> bytes:
    """A real, valid ONNX model with the interface's names: features [b, w, f] -> prediction [b, 1].

    ``weight`` changes the file's bytes, so each value gives another sha256.
    """
    from onnx import TensorProto, helper

    flat = window * features
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["features", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["prediction"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, window, features])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])],
        initializer=[
            helper.make_tensor("flat_shape", TensorProto.INT64, [2], [-1, flat]),
            helper.make_tensor("weights", TensorProto.FLOAT, [flat, 1], [weight] * flat),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def write_artifact_dir(
    folder: Path,
    *,
    name: str = "btcusdt_price",
    onnx_bytes: bytes | None = None,
    plot: bool = True,
    **metadata_overrides: Any,
) -> Path:
    """A folder as training writes it: <name>.onnx, <name>_metadata.json, the plot."""
    folder.mkdir(parents=True, exist_ok=True)
    data = onnx_bytes if onnx_bytes is not None else tiny_onnx_bytes(float(next(_unique_weights)))
    symbol = name.split("_")[0].upper()
    kind = name.rsplit("_", 1)[-1]
    (folder / f"{name}.onnx").write_bytes(data)
    metadata: dict[str, Any] = {
        "name": name,
        "version": None,
        "symbol": symbol,
        "interval": "1h",
        "kind": kind,
        "uses_sentiment": kind == "sentiment",
        "window": 4,
        "onnx": {"input_name": "features", "output_name": "prediction", "opset": 17},
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "data": {
            "start": "2021-01-01T00:00:00Z",
            "end": "2024-06-01T00:00:00Z",
            "content_hash": "c" * 64,
        },
        "out_of_sample_from": OUT_OF_SAMPLE_FROM.isoformat(),
        "allow_short_history": False,
        # One up, one down and one sideways 30-day window: passes the training gate.
        "market_conditions": {"window_days": 30, "threshold": 0.05, "moves": [0.1, -0.1, 0.0]},
        "metrics": {"val_loss": 0.01},
        **metadata_overrides,
    }
    (folder / f"{name}_metadata.json").write_text(json.dumps(metadata))
    if plot:
        (folder / f"{symbol}_{kind}_training.png").write_bytes(b"\x89PNG\r\n\x1a\nplot")
    return folder


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Every registry test stores artifacts in its own folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Real hashing costs ~0.3 s per user; tests log in with known passwords all the same."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Callable[..., Path]:
    counter = itertools.count(1)

    def make(**kwargs: Any) -> Path:
        return write_artifact_dir(tmp_path / f"artifacts-{next(counter)}", **kwargs)

    return make


# --- people in roles -----------------------------------------------------------


def ensure_roles() -> None:
    """The role groups as the migration makes them (a transactional test's flush drops them)."""
    for role, codenames in roles.ROLE_PERMISSIONS.items():
        group, created = Group.objects.get_or_create(name=role)
        if created:
            group.permissions.set(
                Permission.objects.filter(
                    content_type__app_label="models_registry", codename__in=codenames
                )
            )


def make_user(username: str, *role_names: str, superuser: bool = False) -> Any:
    ensure_roles()
    user_model = get_user_model()
    maker = user_model.objects.create_superuser if superuser else user_model.objects.create_user
    user = maker(username=username, email=f"{username}@example.test", password="pw-" + username)
    if not superuser:
        user.is_staff = True
        user.save()
    for role in role_names:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def engineer(db: None) -> Any:
    return make_user("erin_engineer", roles.ML_ENGINEER)


@pytest.fixture
def second_engineer(db: None) -> Any:
    return make_user("evan_engineer", roles.ML_ENGINEER)


@pytest.fixture
def approver(db: None) -> Any:
    return make_user("alice_approver", roles.APPROVER)


@pytest.fixture
def second_approver(db: None) -> Any:
    return make_user("arno_approver", roles.APPROVER)


@pytest.fixture
def deployer(db: None) -> Any:
    return make_user("dora_deployer", roles.DEPLOYER)


@pytest.fixture
def auditor(db: None) -> Any:
    return make_user("otto_auditor", roles.AUDITOR)


@pytest.fixture
def superuser(db: None) -> Any:
    return make_user("root_admin", superuser=True)


# --- targets and evidence ------------------------------------------------------


@pytest.fixture
def staging_target(db: None) -> DeploymentTarget:
    return DeploymentTarget.objects.create(
        name="staging-local", environment=Environment.STAGING, is_local=True
    )


@pytest.fixture
def production_target(db: None) -> DeploymentTarget:
    return DeploymentTarget.objects.create(
        name="production-local", environment=Environment.PRODUCTION, is_local=True
    )


def passing_validation_run(version: ModelVersion, **overrides: Any) -> ValidationRun:
    fields: dict[str, Any] = {
        "model_version": version,
        "status": RunStatus.PASSED,
        "passed": True,
        "in_sample": False,
        "window_start": OUT_OF_SAMPLE_FROM + timedelta(days=1),
        "window_end": OUT_OF_SAMPLE_FROM + timedelta(days=91),
        "gate_results": [{"name": "min_sharpe", "passed": True}],
        "finished_at": timezone.now(),
        **overrides,
    }
    # Born queued and walked to its status: no row is ever born passed (see guards.py).
    return create_in(ValidationRun, fields.pop("status"), **fields)


def passing_paper_run(version: ModelVersion, **overrides: Any) -> PaperTradingRun:
    """A passing replay pre-check (stored bars, in-process): what staging asks for."""
    fields: dict[str, Any] = {
        "model_version": version,
        "status": RunStatus.PASSED,
        "passed": True,
        "bars": 24 * 15,
        "trades": 12,
        "gate_results": [{"name": "max_drawdown", "passed": True}],
        "finished_at": timezone.now(),
        **overrides,
    }
    return create_in(PaperTradingRun, fields.pop("status"), **fields)


def passing_forward_run(
    version: ModelVersion, deployment: Deployment, **overrides: Any
) -> PaperTradingRun:
    """A passing forward paper run of ``deployment``'s staging engine: what approval asks for."""
    fields: dict[str, Any] = {
        "mode": PaperTradingRun.MODE_FORWARD,
        "target": deployment.target,
        "deployment": deployment,
        "config": {"model_sha256": version.onnx_sha256, "target": deployment.target.name},
        **overrides,
    }
    return passing_paper_run(version, **fields)


def finished_deployment(
    version: ModelVersion, target: DeploymentTarget, requested_by: Any, **overrides: Any
) -> Deployment:
    now = timezone.now()
    fields: dict[str, Any] = {
        "target": target,
        "model_version": version,
        "status": DeploymentStatus.SUCCEEDED,
        "sha256": version.onnx_sha256,
        "compatibility": {"passed": True},
        "requested_by": requested_by,
        "started_at": now - timedelta(seconds=5),
        "finished_at": now,
        **overrides,
    }
    return create_in(Deployment, fields.pop("status"), **fields)


# --- versions walked to a state -------------------------------------------------

WALK_ORDER = (
    ModelState.TRAINED,
    ModelState.VALIDATED,
    ModelState.STAGED,
    ModelState.PAPER_TESTED,
    ModelState.APPROVED,
    ModelState.IN_PRODUCTION,
)


@dataclass
class VersionFactory:
    """``factory("approved")``: a new version walked to that state through the services.

    The engineer trains, validates, replays and stages it; its forward paper run on
    staging passes (and so requests its approval); the approver approves; the deployer
    deploys. ``retired`` is an in-production version replaced by a newer one;
    ``rejected`` is a trained version the approver rejected.
    """

    tmp_path: Path
    engineer: Any
    approver: Any
    deployer: Any
    staging_target: DeploymentTarget
    production_target: DeploymentTarget

    def __call__(
        self,
        state: str = ModelState.TRAINED,
        *,
        name: str = "btcusdt_price",
        trained_by: Any = None,
        approved_by: Any = None,
        **metadata: Any,
    ) -> ModelVersion:
        if state == ModelState.REJECTED:
            version = self(ModelState.TRAINED, name=name, trained_by=trained_by, **metadata)
            lifecycle.model_version_reject(
                model_version=version, rejected_by=self.approver, comment="not good enough"
            )
            return _fresh(version)
        if state == ModelState.RETIRED:
            old = self(ModelState.IN_PRODUCTION, name=name, trained_by=trained_by, **metadata)
            self.deploy_to_production(self(ModelState.APPROVED, name=name), previous=old)
            return _fresh(old)
        trainer = trained_by or self.engineer
        folder = write_artifact_dir(
            self.tmp_path / f"factory-{next(_unique_weights)}", name=name, **metadata
        )
        version = model_version_create(source_dir=folder, created_by=trainer)
        for step in WALK_ORDER[1 : WALK_ORDER.index(state) + 1]:
            self._advance(version, step, trainer, approved_by or self.approver)
        return _fresh(version)

    def _advance(self, version: ModelVersion, step: str, trainer: Any, approver: Any) -> None:
        if step == ModelState.VALIDATED:
            lifecycle.model_version_validate(
                model_version=version, validation_run=passing_validation_run(version), actor=trainer
            )
        elif step == ModelState.STAGED:
            passing_paper_run(version)  # the replay pre-check staging asks for
            deployment = finished_deployment(version, self.staging_target, trainer)
            lifecycle.model_version_stage(
                model_version=version, deployment=deployment, actor=trainer
            )
        elif step == ModelState.PAPER_TESTED:
            staged_by = selectors.successful_staging_deployment(version)
            assert staged_by is not None
            lifecycle.model_version_mark_paper_tested(
                model_version=version,
                paper_run=passing_forward_run(version, staged_by),
                actor=trainer,
            )
        elif step == ModelState.APPROVED:
            lifecycle.model_version_approve(
                model_version=version, approved_by=approver, comment="checked the backtest"
            )
        elif step == ModelState.IN_PRODUCTION:
            self.deploy_to_production(version)

    def deploy_to_production(
        self, version: ModelVersion, *, previous: ModelVersion | None = None
    ) -> ModelVersion:
        deployment = finished_deployment(
            version,
            self.production_target,
            self.deployer,
            previous_version=previous,
            approval=lifecycle.current_approval(version),
        )
        return lifecycle.model_version_mark_in_production(
            model_version=version, deployment=deployment, actor=self.deployer
        )


def _fresh(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.get(pk=version.pk)


@pytest.fixture
def version_factory(
    tmp_path: Path,
    engineer: Any,
    approver: Any,
    deployer: Any,
    staging_target: DeploymentTarget,
    production_target: DeploymentTarget,
) -> VersionFactory:
    return VersionFactory(tmp_path, engineer, approver, deployer, staging_target, production_target)


def on_postgresql() -> bool:
    from django.conf import settings

    return "postgresql" in settings.DATABASES["default"]["ENGINE"]


requires_postgresql = pytest.mark.skipif(
    not on_postgresql(),
    reason="needs PostgreSQL (run through `python -m tests.stack -- pytest ...`); "
    "the database here is SQLite",
)


@pytest.fixture
def stored_candles(settings: Any, tmp_path: Path) -> Callable[..., Path]:
    """``stored_candles("BTCUSDT", "2023-06-01", days=500)``: hourly candles in a data store."""
    import numpy as np
    import pandas as pd

    from engine.data.store import merge_candles

    settings.TRADEBOT_DATA_DIR = tmp_path / "store"

    def store(symbol: str = "BTCUSDT", start: str = "2023-06-01", days: int = 580) -> Path:
        index = pd.date_range(start, periods=days * 24, freq="1h", tz="UTC", name="open_time")
        close = 100.0 + np.arange(len(index), dtype="float64") * 0.01
        frame = pd.DataFrame(
            {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
             "volume": 1.0},
            index=index,
        )  # fmt: skip
        merge_candles(settings.TRADEBOT_DATA_DIR, symbol, "1h", frame)
        return Path(settings.TRADEBOT_DATA_DIR)

    return store
