"""A version's file must come from the training configuration its metadata records (#28).

Fold evidence judges the recorded configuration, re-fitted per fold; the reproduction job
beside the folds re-fits that configuration on the version's recorded training bars and
compares the model with the file. Doctored metadata (another seed than the file was trained
with, fewer training bars than it saw) is said on every decision page and in the mail; an
honest file is said to reproduce.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models_registry import approval_mails, verdicts
from models_registry.admin import cockpit
from models_registry.models import ModelVersion, ValidationRun
from models_registry.services import walk_forward
from models_registry.services.model_versions import model_version_create
from models_registry.templatetags.registry_power import evidence_power
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    backtest,
    media,
    model_dir,
    store,
)

REFIT_POLICY = {"days": 10, "refit_folds": 2, "fold_days": 5}


def doctored(original: Path, target: Path, change: dict[str, Any]) -> Path:
    """A copy of a model folder whose metadata says something its file does not."""
    shutil.copytree(original, target)
    path = next(target.glob("*_metadata.json"))
    metadata = json.loads(path.read_text())
    for dotted, value in change.items():
        where = metadata
        *parents, leaf = dotted.split(".")
        for key in parents:
            where = where[key]
        where[leaf] = value(where[leaf]) if callable(value) else value
    path.write_text(json.dumps(metadata))
    return target


def validate_on_folds(version: ModelVersion, settings: Any) -> ValidationRun:
    """The guide's command, in words; what it printed is kept on the run as `printed`."""
    settings.TRADEBOT_GATES = GENEROUS_GATES
    settings.TRADEBOT_VALIDATION_POLICY = REFIT_POLICY
    printed = backtest("ml_basic", "--model", version.name)
    run = ValidationRun.objects.get(model_version=version)
    run.printed = printed  # type: ignore[attr-defined]
    return run


def later_start(start: str) -> str:
    return (pd.Timestamp(start) + pd.Timedelta(days=2)).isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"training.config.seed": 43}, "differs", "does NOT reproduce"),
        ({"training.config.units": 4}, "differs", "does NOT reproduce"),
        ({"data.start": later_start}, "unchecked", "not the ones it records"),
    ],
    ids=["another-seed", "another-architecture", "fewer-bars"],
)
def test_a_file_trained_otherwise_than_recorded_is_said_everywhere(
    change: dict[str, Any],
    status: str,
    words: str,
    media: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    settings: Any,
) -> None:
    source = doctored(model_dir, tmp_path / "doctored", change)
    version = model_version_create(source_dir=source, created_by=None)

    run = validate_on_folds(version, settings)

    recorded = run.config[walk_forward.CONFIG_KEY]["reproduction"]
    assert recorded["status"] == status, recorded
    if status == "differs":
        assert recorded["bars"] == 5 * 24 and recorded["max_difference"] > 1e-4
    warning = verdicts.reproduction_warning(run, "validation run")
    assert warning is not None and words in warning
    assert f"reproduction: its file {words}" in run.printed or words in run.printed
    evidence = cockpit.decision_evidence(version, "production")
    assert any(words in w for w in evidence["warnings"]), evidence["warnings"]
    assert words in approval_mails.verdict_in_words(version)
    power = evidence_power(version)
    assert power is not None and not power["reproduces"] and words in power["reproduction"]


@pytest.mark.django_db
def test_a_file_that_saw_more_bars_than_it_records_differs_even_with_a_consistent_hash(
    media: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    store: Path,  # noqa: F811
    tmp_path: Path,
    settings: Any,
) -> None:
    """The reported attack: metadata moved its last training bar earlier, so that bars the
    file was trained on look unseen, with the content hash recomputed for the claimed bars."""
    from engine.data import read_candles

    recorded = json.loads(next(model_dir.glob("*_metadata.json")).read_text())["data"]
    claimed_end = pd.Timestamp(recorded["end"]) - pd.Timedelta(days=3)
    claimed = read_candles(
        store, "BTCUSDT", "1h", start=recorded["start"], end=claimed_end + pd.Timedelta(hours=1)
    )
    source = doctored(
        model_dir,
        tmp_path / "doctored",
        {
            "data.end": claimed_end.isoformat(),
            "data.rows": len(claimed.frame),
            "data.content_hash": claimed.content_hash,
        },
    )
    version = model_version_create(source_dir=source, created_by=None)

    run = validate_on_folds(version, settings)

    reproduction = run.config[walk_forward.CONFIG_KEY]["reproduction"]
    assert reproduction["status"] == "differs", reproduction
    warning = verdicts.reproduction_warning(run, "validation run")
    assert warning is not None and "does NOT reproduce" in warning


@pytest.mark.django_db
def test_an_honest_file_is_said_to_reproduce_and_warns_nobody(
    media: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    settings: Any,
) -> None:
    version = model_version_create(source_dir=model_dir, created_by=None)

    run = validate_on_folds(version, settings)

    assert verdicts.reproduction_warning(run, "validation run") is None
    assert "  reproduction: its file reproduces from its recorded training configuration" in (
        run.printed
    )
    evidence = cockpit.decision_evidence(version, "production")
    assert not any("reproduce" in w for w in evidence["warnings"]), evidence["warnings"]
    power = evidence_power(version)
    assert power is not None and power["reproduces"]
    assert power["reproduction"].startswith("its file reproduces from its recorded training")


@pytest.mark.django_db
def test_a_failed_re_fit_is_recorded_as_unchecked_and_never_fails_the_run(
    media: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = model_version_create(source_dir=model_dir, created_by=None)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(walk_forward, "_reproduce", broken)
    run = validate_on_folds(version, settings)

    assert run.status == "passed", run.error
    recorded = run.config[walk_forward.CONFIG_KEY]["reproduction"]
    assert recorded["status"] == "unchecked"
    assert recorded["reason"] == "the re-fit failed: OSError: disk full"
    warning = verdicts.reproduction_warning(run, "validation run")
    assert warning is not None and "was not checked (the re-fit failed" in warning


@pytest.mark.django_db
def test_a_join_without_a_reproduction_result_says_it_was_not_checked(
    media: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    settings: Any,
) -> None:
    """Folds dispatched by an older chord (no reproduction job): unchecked, said so."""
    from tests.registry.test_walk_forward_validation import folds_run_here

    version = model_version_create(source_dir=model_dir, created_by=None)
    run, _plan, results = folds_run_here(version, settings)
    finished = walk_forward.walk_forward_join(results, run.pk)
    recorded = finished.config[walk_forward.CONFIG_KEY]["reproduction"]
    assert recorded["status"] == "unchecked"
    assert recorded["reason"] == "no reproduction job ran with these folds"
