"""Provenance in staging and production (#26, finding 6): every registration and training
names its user, and a version with no recorded creator is never approved there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from models_registry.models import Approval, ModelState, ModelVersion
from models_registry.services import lifecycle
from models_registry.services.lifecycle import FourEyesViolation
from models_registry.services.model_versions import model_version_register
from models_registry.services.training import TrainingRefused, training_run
from tests.registry.conftest import write_artifact_dir

pytestmark = pytest.mark.django_db

NAMED_ENVIRONMENTS = ["staging", "production"]


@pytest.mark.parametrize("environment", NAMED_ENVIRONMENTS)
def test_register_model_without_a_user_is_refused(
    environment: str, settings: Any, tmp_path: Path
) -> None:
    settings.ENVIRONMENT = environment
    folder = write_artifact_dir(tmp_path / "offered", name="btcusdt_price")
    with pytest.raises(CommandError, match=f"must name its user in {environment}"):
        call_command("register_model", str(folder))
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("environment", NAMED_ENVIRONMENTS)
def test_the_service_refuses_an_anonymous_registration_too(
    environment: str, settings: Any, tmp_path: Path, engineer: Any
) -> None:
    settings.ENVIRONMENT = environment
    folder = write_artifact_dir(tmp_path / "offered", name="btcusdt_price")
    with pytest.raises(Exception, match="must name its user"):
        model_version_register(source_dir=folder, registered_by=None)
    version, _ = model_version_register(source_dir=folder, registered_by=engineer)
    assert version.created_by == engineer


def test_anonymous_registration_stays_possible_in_development(
    settings: Any, tmp_path: Path
) -> None:
    settings.ENVIRONMENT = "development"
    folder = write_artifact_dir(tmp_path / "offered", name="btcusdt_price")
    version, _ = model_version_register(source_dir=folder, registered_by=None)
    assert version.created_by is None


def test_anonymous_training_is_refused_in_staging_before_any_work(settings: Any) -> None:
    settings.ENVIRONMENT = "staging"
    # No market data is configured: the refusal comes first, before anything is loaded.
    with pytest.raises(TrainingRefused, match="must name its user in staging"):
        training_run(symbol="BTCUSDT", options={}, requested_by=None)
    assert not ModelVersion.objects.exists()


def creatorless(version: ModelVersion) -> ModelVersion:
    ModelVersion.objects.filter(pk=version.pk).update(created_by=None)
    return ModelVersion.objects.get(pk=version.pk)


@pytest.mark.parametrize("environment", NAMED_ENVIRONMENTS)
def test_a_version_without_a_creator_is_never_approved_there(
    environment: str, settings: Any, version_factory: Any, superuser: Any, approver: Any
) -> None:
    version = creatorless(version_factory(ModelState.PAPER_TESTED))
    settings.ENVIRONMENT = environment
    for person in (superuser, approver):
        with pytest.raises(FourEyesViolation, match="no recorded creator"):
            lifecycle.model_version_approve(
                model_version=version, approved_by=person, comment="looks fine"
            )
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.PAPER_TESTED
    assert not Approval.objects.filter(model_version=version).exists()


def test_in_development_a_creatorless_version_keeps_the_old_rule(
    settings: Any, version_factory: Any, approver: Any
) -> None:
    version = creatorless(version_factory(ModelState.PAPER_TESTED))
    settings.ENVIRONMENT = "development"
    lifecycle.model_version_approve(model_version=version, approved_by=approver, comment="ok")
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.APPROVED
