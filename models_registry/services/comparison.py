"""Compare versions like for like: one window none of them trained on, one backtest each.

The window is the newest stretch of stored candles, of the policy's validation length,
that starts after every selected version's data window and every split its training and
selection touched (``models_registry.windows``). Each version's figures come from a
validation run on exactly that window: a finished run already there is reused, otherwise
an exploratory comparison run is queued (``runs.comparison_run_request``). Such a run is
counted as a trial of its model name, like every validation attempt, and never moves a
version's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from engine.data import interval_timedelta, stored_candle_range
from models_registry import formatting
from models_registry.gates import validation_policy_for
from models_registry.models import ModelVersion, RunStatus, ValidationRun
from models_registry.services import runs
from models_registry.windows import WindowError, version_windows

COMPARE_STRATEGY = "ml_basic"
MAX_VERSIONS = 6  # one chart stays readable, and each missing run is a backtest on a worker
FINISHED = (RunStatus.PASSED, RunStatus.FAILED)
PENDING = (RunStatus.QUEUED, RunStatus.RUNNING)


class ComparisonRefused(ValueError):
    """The selection cannot be compared; the message says why in one sentence."""


@dataclass(frozen=True)
class CommonWindow:
    """[start, stop) on the bar grid; ``last_bar`` is the last bar inside it (stop - one bar)."""

    start: pd.Timestamp | None
    stop: pd.Timestamp | None
    step: pd.Timedelta
    days: float
    unseen_from: dict[int, pd.Timestamp] = field(default_factory=dict)
    reason: str = ""  # why there is no window; empty when there is one
    # True: a window where every selected version already has a finished run (no new trial).
    from_existing_runs: bool = False

    @property
    def exists(self) -> bool:
        return self.start is not None and not self.reason

    @property
    def last_bar(self) -> pd.Timestamp | None:
        return self.stop - self.step if self.stop is not None else None

    def text(self) -> str:
        return formatting.window(_dt(self.start), _dt(self.last_bar))


def versions_check(versions: Sequence[ModelVersion]) -> None:
    """Two to MAX_VERSIONS versions of one symbol and interval, or a one-line refusal."""
    if len(versions) < 2:
        raise ComparisonRefused("select at least two versions to compare.")
    if len(versions) > MAX_VERSIONS:
        raise ComparisonRefused(
            f"select at most {MAX_VERSIONS} versions to compare (got {len(versions)}): "
            "more curves would not be readable in one chart."
        )
    markets = sorted({f"{v.symbol} {v.interval}" for v in versions})
    if len(markets) > 1:
        raise ComparisonRefused(
            f"compare versions of one market: the selection mixes {', '.join(markets)}, "
            "and one window of one market's candles cannot judge them all."
        )


def unseen_from(version: ModelVersion, step: pd.Timedelta) -> pd.Timestamp:
    """The first bar after everything the version's making read: its data window and splits."""
    candidates: list[pd.Timestamp] = []
    first_unseen = version.first_unseen_at
    if first_unseen is None:
        try:
            first_unseen = version_windows(version.metadata or {}, version.interval)[
                "first_unseen_at"
            ]
        except WindowError as exc:
            raise ComparisonRefused(
                f"{version}: its training windows cannot be read ({exc})."
            ) from exc
    if first_unseen is not None:
        candidates.append(_utc(first_unseen))
    if version.data_end is not None:
        candidates.append(_utc(version.data_end).floor(step) + step)
    if not candidates:
        raise ComparisonRefused(
            f"{version} states neither a data window nor training splits, so no window can "
            "be shown to be one it never trained on."
        )
    return max(candidates)


def common_window(
    versions: Sequence[ModelVersion], *, data_dir: Path | None = None
) -> CommonWindow:
    """The newest policy-length window of stored candles none of ``versions`` trained on."""
    versions_check(versions)
    symbol, interval = versions[0].symbol, versions[0].interval
    step = interval_timedelta(interval)
    policies = [validation_policy_for(v.name) for v in versions]
    # Each version's policy says how long a validation is; the longest judges all of them.
    days = max(float(p["days"]) for p in policies)
    unseen = {v.pk: unseen_from(v, step) for v in versions}
    data_dir = Path(data_dir or settings.TRADEBOT_DATA_DIR)
    stored = stored_candle_range(data_dir, symbol, interval)
    if stored is None:
        return CommonWindow(
            None, None, step, days, unseen, f"No common window: no {symbol} {interval} "
            f"candles are stored in {data_dir}, so there is nothing to backtest on.",
        )  # fmt: skip
    stop = stored[1] + step
    ends = [_utc(p["end"]) for p in policies if p.get("end")]
    if ends:
        stop = min(stop, min(ends).ceil(step))  # a policy end caps every validation window
    start = stop - pd.Timedelta(days=days)
    latest = max(versions, key=lambda v: unseen[v.pk])
    if start < unseen[latest.pk]:
        left = max((stop - unseen[latest.pk]) / pd.Timedelta(days=1), 0)
        return CommonWindow(
            None, None, step, days, unseen, f"No common window: {latest} trained on data up to "
            f"{formatting.utc(_dt(unseen[latest.pk] - step))}, which leaves {left:.1f} days of "
            f"stored {symbol} {interval} candles after it, fewer than the policy's "
            f"{days:g} days.",
        )  # fmt: skip
    if start < stored[0]:
        return CommonWindow(
            None, None, step, days, unseen, f"No common window: the stored {symbol} {interval} "
            f"candles ({formatting.window(_dt(stored[0]), _dt(stored[1]))}) are shorter than "
            f"the policy's {days:g} days.",
        )  # fmt: skip
    return CommonWindow(start, stop, step, days, unseen)


def shared_run_window(
    versions: Sequence[ModelVersion], newest: CommonWindow
) -> CommonWindow | None:
    """The newest window on which every version already has a finished like-for-like run
    that none of them trained on, at least the policy's length; None when there is none.

    Comparing there costs no new backtest and no new trial: the figures exist already.
    """
    step, days = newest.step, newest.days
    unseen = newest.unseen_from or {v.pk: unseen_from(v, step) for v in versions}
    earliest = max(unseen.values())
    per_version: list[set[tuple[datetime | None, datetime | None]]] = []
    for version in versions:
        policy = validation_policy_for(version.name)
        windows = {
            (run.window_start, run.window_end)
            for run in ValidationRun.objects.filter(
                model_version=version,
                strategy=COMPARE_STRATEGY,
                status__in=FINISHED,
                in_sample=False,
                window_start__isnull=False,
                window_end__isnull=False,
                window_start__gte=_dt(earliest),
            )
            if _like_for_like(run, policy)
            and (_utc(run.window_end) + step - _utc(run.window_start)) >= pd.Timedelta(days=days)
        }
        per_version.append(windows)
    shared = set.intersection(*per_version) if per_version else set()
    if not shared:
        return None
    start, last = max(shared, key=lambda w: _utc(w[1]))
    return CommonWindow(_utc(start), _utc(last) + step, step, days, unseen, from_existing_runs=True)


def run_on_window(version: ModelVersion, window: CommonWindow) -> ValidationRun | None:
    """A finished run of ``version`` on exactly ``window`` at policy costs or dearer, else a
    queued or running comparison run on it, else None."""
    if not window.exists:
        return None
    candidates = ValidationRun.objects.filter(
        model_version=version,
        strategy=COMPARE_STRATEGY,
        window_start=_dt(window.start),
        window_end=_dt(window.last_bar),
        status__in=FINISHED,
        in_sample=False,
    ).order_by("-created_at", "-id")
    policy = validation_policy_for(version.name)
    for run in candidates:
        if _like_for_like(run, policy):
            return run
    return (
        ValidationRun.objects.filter(
            model_version=version,
            status__in=PENDING,
            config__comparison=True,
            config__start=window.start.isoformat(),  # type: ignore[union-attr]
            config__end=window.stop.isoformat(),  # type: ignore[union-attr]
        )
        .order_by("-created_at")
        .first()
    )


def failed_attempt(version: ModelVersion, window: CommonWindow) -> ValidationRun | None:
    """The latest comparison run on the window that could not run (its error says why)."""
    if not window.exists:
        return None
    return (
        ValidationRun.objects.filter(
            model_version=version,
            status=RunStatus.ERROR,
            config__comparison=True,
            config__start=window.start.isoformat(),  # type: ignore[union-attr]
            config__end=window.stop.isoformat(),  # type: ignore[union-attr]
        )
        .order_by("-created_at")
        .first()
    )


def _like_for_like(run: ValidationRun, policy: dict[str, Any]) -> bool:
    """Policy costs (or higher), one walk-forward part: the same test every version gets."""
    engine = (run.config or {}).get("engine") or {}
    try:
        fee, slippage = float(engine["fee_bps"]), float(engine["slippage_bps"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        fee >= float(policy["fee_bps"])
        and slippage >= float(policy["slippage_bps"])
        and int((run.config or {}).get("walk_forward") or 1) == 1
    )


def comparison_runs_request(
    *, versions: Sequence[ModelVersion], requested_by: User, window: CommonWindow
) -> list[ValidationRun]:
    """Queue a comparison run for each version that has no usable or pending run on the window.

    Queued, not run in the request: each backtest takes seconds to minutes, more than a page
    may (and a web worker should) spend; the backtest queue exists for exactly this work.
    Each version's row is locked while it is checked, so two clicks queue one run.
    """
    if not window.exists:
        raise ComparisonRefused(window.reason)
    queued = []
    for version in versions:
        with transaction.atomic():
            locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
            if run_on_window(locked, window) is not None:
                continue
            config = {
                "strategy": COMPARE_STRATEGY,
                "start": window.start.isoformat(),  # type: ignore[union-attr]
                "end": window.stop.isoformat(),  # type: ignore[union-attr]
                "comparison": True,
            }
            queued.append(
                runs.comparison_run_request(
                    model_version=locked, requested_by=requested_by, config=config
                )
            )
    return queued


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _dt(value: pd.Timestamp | None) -> datetime | None:
    return value.to_pydatetime() if value is not None else None
