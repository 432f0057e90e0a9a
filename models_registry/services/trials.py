"""Counted trials: every attempt at a model name, so the deflated Sharpe ratio knows N.

Bailey & López de Prado (2014) deflate a Sharpe ratio by the best that N skill-less trials
would reach; N must count every attempt, not only the one shown. Here:

- each finished validation run (policy, exploratory or scheduled) is one trial on its window,
  recorded in the run's completing transaction (``trial_record_for_run``);
- each version's training is one trial on the data it read, and a searched version adds one
  per search trial (``trials_record_for_version``, in the version's creating transaction).

A validation of version V on window W counts the trials of V's name whose data overlaps W,
plus V's own training and search trials (they chose V), plus itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from models_registry.models import ModelTrial, ModelVersion, ValidationRun


@dataclass(frozen=True)
class TrialCount:
    """How many attempts a validation answers for (itself included) and their known Sharpes."""

    trials: int
    sharpes: list[float]
    by_kind: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "known_sharpes": len(self.sharpes), "by_kind": self.by_kind}


def trials_for_window(
    *, model_name: str, version: ModelVersion | None, start: datetime, stop: datetime
) -> TrialCount:
    """The count for one more validation of `version` on [start, stop), this run included.

    "Overlapping data" is everything the version's judgement rests on: the bars its making
    read and the window it is judged on. So the trainings and looks of sibling versions on
    the same history count too, whichever version they were made with (issue 25).
    """
    span_start = start
    if version is not None and version.pk is not None:
        data_start, _data_end, known = version_data_window(version)
        if known:
            span_start = min(start, data_start)
    overlapping = Q(model_name=model_name, window_start__lt=stop, window_end__gte=span_start)
    if version is not None and version.pk is not None:
        overlapping |= Q(model_version=version, kind__in=_TRAINING_KINDS)
    rows = list(ModelTrial.objects.filter(overlapping).values_list("id", "kind", "sharpe_per_bar"))
    by_kind: dict[str, int] = {}
    for _, kind, _sharpe in rows:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    sharpes = [float(sharpe) for _, _, sharpe in rows if sharpe is not None]
    return TrialCount(len(rows) + 1, sharpes, by_kind)


_TRAINING_KINDS = (ModelTrial.KIND_TRAINING, ModelTrial.KIND_SEARCH)


def trials_counted_for_refit(
    version: ModelVersion, start: datetime, stop: datetime, *, folds: int
) -> TrialCount:
    """A walk-forward validation's count: as for one window over its evidence, plus each fold's
    model, which is one more model fitted and looked at (#28).

    The fold models are recorded as training trials of the version when the run completes
    (models_registry/services/walk_forward.py), so later validations count them too.
    """
    counted = trials_for_window(model_name=version.name, version=version, start=start, stop=stop)
    by_kind = {**counted.by_kind, "fold_model": folds}
    return TrialCount(counted.trials + folds, counted.sharpes, by_kind)


def _run_kind(run: ValidationRun) -> str:
    if run.kind == ValidationRun.KIND_SCHEDULED:
        return ModelTrial.KIND_SCHEDULED
    return ModelTrial.KIND_EXPLORATORY if run.exploratory else ModelTrial.KIND_VALIDATION


def trial_record_for_run(run: ValidationRun) -> ModelTrial | None:
    """One trial for a finished run with a window; call inside the run's completing transaction."""
    if run.window_start is None or run.window_end is None:
        return None  # refused before it saw a bar: nothing was tried on any data
    sharpe = (run.metrics or {}).get("sharpe_per_bar")
    return ModelTrial.objects.create(
        model_name=run.model_version.name,
        kind=_run_kind(run),
        model_version=run.model_version,
        validation_run=run,
        window_start=run.window_start,
        window_end=run.window_end,
        sharpe_per_bar=float(sharpe) if isinstance(sharpe, int | float) else None,
        detail={
            "passed": run.passed,
            "exploratory_reasons": list(run.exploratory_reasons or []),
            "trials_counted": (run.metrics or {}).get("trials"),
        },
    )


def version_data_window(version: ModelVersion) -> tuple[datetime, datetime, bool]:
    """The bars a version's making read: its data window, else its fit/selection spans.

    The third value is False when the metadata states no window at all: the trial is then
    recorded at the version's creation time, counted for its own validations, and says so.
    """
    starts = [d for d in (version.data_start, version.fit_start, version.selection_start) if d]
    ends = [d for d in (version.data_end, version.fit_end, version.selection_end) if d]
    if starts and ends:
        return min(starts), max(ends), True
    return version.created_at, version.created_at, False


def trials_record_for_version(version: ModelVersion) -> list[ModelTrial]:
    """The version's training trial, or one per search trial; inside its creating transaction."""
    start, end, known = version_data_window(version)
    search = (version.metadata or {}).get("search") or {}
    records = [t for t in (search.get("trials") or []) if isinstance(t, dict)]
    common = {
        "model_name": version.name,
        "model_version": version,
        "window_start": start,
        "window_end": end,
    }
    if not records:
        trial = ModelTrial.objects.create(
            **common, kind=ModelTrial.KIND_TRAINING, detail={"window_known": known}
        )
        return [trial]
    return [
        ModelTrial.objects.create(
            **common,
            kind=ModelTrial.KIND_SEARCH,
            detail={
                "window_known": known,
                "number": record.get("number"),
                "state": record.get("state"),
                "params": record.get("params") or {},
                "selection_value": record.get("value"),
                "chosen": record.get("number") == search.get("best_trial"),
            },
        )
        for record in records
    ]


def trial_record_for_look(
    *,
    model_name: str,
    version: ModelVersion | None,
    window: tuple[datetime, datetime],
    policy_window: tuple[datetime, datetime] | None,
    sharpe_per_bar: float | None,
    detail: dict[str, Any],
) -> ModelTrial | None:
    """A report-only look (``run_backtest --no-db``) at a model's policy window is a trial.

    Computing the policy verdict of a version and recording nothing would let a team look at
    many and record only the best (issue 25). A look whose window overlaps the model's
    policy window is counted like an exploratory run; one entirely outside it is not.
    """
    from django.db import transaction

    from models_registry.services.audit import audit_event_record

    if policy_window is None or not (
        window[0] <= policy_window[1] and policy_window[0] <= window[1]
    ):
        return None
    with transaction.atomic():
        trial = ModelTrial.objects.create(
            model_name=model_name,
            kind=ModelTrial.KIND_EXPLORATORY,
            model_version=version if version is not None and version.pk else None,
            window_start=window[0],
            window_end=window[1],
            sharpe_per_bar=sharpe_per_bar,
            detail={"look": True, **detail},
        )
        audit_event_record(
            event_type="policy_window_looked",
            obj=trial,
            data={
                "model_name": model_name,
                "version": version.pk if version is not None and version.pk else None,
                "window": [window[0].isoformat(), window[1].isoformat()],
                "policy_window": [policy_window[0].isoformat(), policy_window[1].isoformat()],
            },
        )
    return trial
