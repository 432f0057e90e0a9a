"""The state field refuses every write that does not come from a lifecycle service."""

from __future__ import annotations

from typing import Any

import pytest

from models_registry.models import (
    AuditEvent,
    DeletionRefused,
    ModelState,
    ModelVersion,
    StateChangeRefused,
)

pytestmark = pytest.mark.django_db


def test_save_of_a_changed_state_is_refused(version_factory: Any) -> None:
    version = version_factory()
    version.state = ModelState.APPROVED
    with pytest.raises(StateChangeRefused, match="lifecycle service"):
        version.save()
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED


def test_queryset_update_of_state_is_refused(version_factory: Any) -> None:
    version = version_factory()
    with pytest.raises(StateChangeRefused):
        ModelVersion.objects.filter(pk=version.pk).update(state=ModelState.IN_PRODUCTION)
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED


def test_bulk_update_with_state_is_refused(version_factory: Any) -> None:
    version = version_factory()
    version.state = ModelState.APPROVED
    with pytest.raises(StateChangeRefused):
        ModelVersion.objects.bulk_update([version], ["state"])
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED


def test_other_fields_still_save(version_factory: Any) -> None:
    version = version_factory()
    ModelVersion.objects.filter(pk=version.pk).update(metrics={"note": 1})
    version.refresh_from_db()
    version.metrics = {"note": 2}
    version.save()
    assert ModelVersion.objects.get(pk=version.pk).metrics == {"note": 2}


def test_a_new_version_cannot_start_beyond_trained(version_factory: Any) -> None:
    template = version_factory()
    count = ModelVersion.objects.count()
    with pytest.raises(StateChangeRefused, match="starts in state 'trained'"):
        ModelVersion.objects.create(
            name=template.name,
            version=99,
            symbol=template.symbol,
            kind=template.kind,
            state=ModelState.APPROVED,
            onnx_sha256="f" * 64,
        )
    assert ModelVersion.objects.count() == count


def test_versions_are_never_deleted(version_factory: Any) -> None:
    version = version_factory()
    events = AuditEvent.objects.count()
    with pytest.raises(DeletionRefused):
        version.delete()
    with pytest.raises(DeletionRefused):
        ModelVersion.objects.filter(pk=version.pk).delete()
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert AuditEvent.objects.count() == events
