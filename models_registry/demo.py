"""The demo's walk through the lifecycle, each step through the commands and services a user has.

Every step is idempotent, so `make demo` can be run again on the same `var/`:
data already imported is merged, and a model already in production is left
where it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from models_registry.demo_data import (
    DEMO_DATA,
    DEMO_SYMBOL,
    HELD_BACK_FROM,
    import_candles,
)
from models_registry.demo_data import call_json as _call_json
from models_registry.models import ModelState, ModelVersion

Say = Callable[[str], None]


def held_back_copy() -> Path:
    """The shipped candles before HELD_BACK_FROM, as a CSV the same import reads."""
    import pandas as pd

    target = Path(settings.VAR_DIR) / "demo-import" / "BTCUSDT-1h-until-april.csv.gz"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.read_csv(DEMO_DATA / "BTCUSDT-1h.csv.gz")
        frame[frame["date"] < HELD_BACK_FROM].to_csv(target, index=False)
    return target


def import_demo_data(say: Say) -> None:
    say(f"importing the shipped BTCUSDT hourly history up to {HELD_BACK_FROM}, and the index")
    klines = import_candles(held_back_copy())
    sentiment = _call_json(
        "import_sentiment", str(DEMO_DATA / "fear_greed_index.csv.gz"), on_gaps="report"
    )
    say(f"  candles: {_summary(klines)}; sentiment: {_summary(sentiment)}")


def _summary(result: dict[str, Any]) -> str:
    report = result.get("validation", {})
    gaps = report.get("issues", {}).get("gaps", {}).get("count", 0)
    return (
        f"{result.get('rows_in_store')} rows from {report.get('first_time')} to "
        f"{report.get('last_time')}, {gaps} gap(s) reported, "
        f"{report.get('filled_rows', 0)} row(s) filled"
    )


def latest_demo_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(symbol=DEMO_SYMBOL).order_by("-created_at").first()


def walk_lifecycle(*, users: dict[str, Any], say: Say) -> None:
    from models_registry.management.commands.setup_periodic_tasks import ensure_periodic_tasks

    ensure_periodic_tasks()
    say("Celery beat schedules are in place (admin: Periodic tasks)")
    import_demo_data(say)
    steps = _lifecycle_steps()
    version = latest_demo_version()
    if version is not None and version.state == ModelState.IN_PRODUCTION:
        say(f"{version} is already in production: nothing to walk (make clean-demo to start over)")
        return
    for step in steps:
        version = step(users=users, say=say, version=version)
        if version is None:
            return


def _lifecycle_steps() -> list[Callable[..., ModelVersion | None]]:
    from models_registry import demo_steps

    return demo_steps.STEPS
