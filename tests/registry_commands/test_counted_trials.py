"""Every attempt counts (#12): trials recorded append-only, and each one deflates the next."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from models_registry.models import DeletionRefused, ModelTrial, ModelVersion, RegistryError
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    backtest_json,
    media,
    model_dir,
    store,
)
from tests.registry_commands.test_run_backtest import version as version


@pytest.mark.django_db
def test_registration_records_one_training_trial_on_the_data_it_read(
    version: ModelVersion,
) -> None:
    trial = ModelTrial.objects.get(model_version=version)
    assert trial.kind == ModelTrial.KIND_TRAINING and trial.model_name == version.name
    assert trial.window_start == version.data_start and trial.window_end == version.data_end


@pytest.mark.django_db
def test_each_run_is_a_trial_and_the_next_run_counts_it(version: ModelVersion) -> None:
    first = backtest_json("ml_basic", "--days", "10", "--model", version.name, gates_fail=True)
    second = backtest_json(
        "ml_basic", "--days", "10", "--fee-bps", "0", "--model", version.name, gates_fail=True
    )

    # training + itself, then training + the first run + itself.
    assert first["metrics"]["trials"] == 2
    assert second["metrics"]["trials"] == 3
    kinds = sorted(ModelTrial.objects.values_list("kind", flat=True))
    assert kinds == ["exploratory_validation", "training", "validation"]
    recorded = ModelTrial.objects.get(validation_run_id=first["run_id"])
    assert recorded.sharpe_per_bar == pytest.approx(first["metrics"]["sharpe_per_bar"])


@pytest.mark.django_db
def test_trials_are_append_only_in_the_orm_and_the_database(version: ModelVersion) -> None:
    trial = ModelTrial.objects.get(model_version=version)
    with pytest.raises(RegistryError):
        trial.save()
    with pytest.raises(RegistryError):
        ModelTrial.objects.update(sharpe_per_bar=9.0)
    with pytest.raises(DeletionRefused):
        ModelTrial.objects.all().delete()
    for statement in ("UPDATE {t} SET sharpe_per_bar = 9", "DELETE FROM {t}"):
        with (
            pytest.raises(Exception, match=r"append-only|Cannot update or delete"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement.format(t=ModelTrial._meta.db_table))
    assert ModelTrial.objects.filter(model_version=version).count() == 1
