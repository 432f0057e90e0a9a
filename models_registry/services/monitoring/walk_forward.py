"""The weekly walk-forward report: a K-part walk-forward over each production version's whole
out-of-sample history, run as a scheduled validation in the ``wf-<ISO week>`` slot."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from models_registry.models import ModelState, ModelVersion
from models_registry.services.monitoring.scheduled import ScheduledResult, scheduled_validation
from models_registry.services.monitoring.window import weekly_slot

logger = logging.getLogger(__name__)

WALK_FORWARD_PARTS = 4


def walk_forward_report(
    *,
    model_version: ModelVersion,
    parts: int = WALK_FORWARD_PARTS,
    now: datetime | None = None,
    slot: str | None = None,
    task_id: str = "",
    data_dir: Path | None = None,
) -> ScheduledResult:
    """The weekly stability report: a K-part walk-forward over the whole out-of-sample history.

    Recorded as a scheduled ValidationRun with slot ``wf-<ISO year>-W<week>`` (metrics per
    part in ``metrics.walk_forward``, the stability summary in ``drift.walk_forward``) so it
    sits beside the daily runs in the admin. It is a report, not a verdict: its window
    overlaps bars already judged, so it moves neither the health nor the scheduled window.
    """
    return scheduled_validation(
        model_version=model_version,
        slot=slot or weekly_slot(now),
        now=now,
        task_id=task_id,
        data_dir=data_dir,
        walk_forward=max(2, parts),
    )


def walk_forward_reports(
    now: datetime | None = None, parts: int = WALK_FORWARD_PARTS
) -> list[ScheduledResult]:
    results = []
    for version in ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("pk"):
        try:
            results.append(walk_forward_report(model_version=version, parts=parts, now=now))
        except Exception as exc:
            logger.exception("walk-forward report of %s crashed", version)
            results.append(ScheduledResult(version.pk, weekly_slot(now), skipped=f"error: {exc}"))
    return results
