"""The demo's walk through the lifecycle, each step through the commands and services a user has.

`make demo` can be run again on the same `var/`. A walk that finished leaves a marker
(``var/demo-walked.json``) and a second run only serves the admin. A walk that stopped
part way continues from what the registry records: a version left half-walked is
rejected by the demo's approver (a recorded decision, as a person would), and the walk
goes on from the first step not done. `make clean-demo` starts over from nothing.
"""

from __future__ import annotations

import json
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
from models_registry.models import HealthStatus, ModelState, ModelVersion

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


WALKED_MARKER = "demo-walked.json"


def walked_marker() -> Path:
    return Path(settings.VAR_DIR) / WALKED_MARKER


def walk_lifecycle(*, users: dict[str, Any], say: Say) -> None:
    from models_registry.management.commands.setup_periodic_tasks import ensure_periodic_tasks

    ensure_periodic_tasks()
    say("Celery beat schedules are in place (admin: Periodic tasks)")
    marker = walked_marker()
    if marker.exists():
        say(f"the demo already walked the lifecycle on this state ({marker}): serving what it "
            "left (make clean-demo to start over)")  # fmt: skip
        restart_local_production(say)
        return
    import_demo_data(say)
    steps = _lifecycle_steps()
    start, version = resume_point(users=users, say=say)
    if start:
        say(f"a previous demo run stopped part way: continuing at step {start + 1} of {len(steps)}")
    for step in steps[start:]:
        version = step(users=users, say=say, version=version)
        if version is None:
            return
    marker.write_text(json.dumps({"version": str(version) if version else None}))


def restart_local_production(say: Say) -> None:
    """Start the local production hosts' engines again, as systemd would at boot.

    The demo stopped them when it last exited; without this the host check would find
    production not serving its version and block the target until a deployer looked."""
    from deployment.connection import open_connection
    from deployment.steps import StepFailed, restart
    from models_registry.models import DeploymentTarget, Environment
    from models_registry.services.deployments import live_version_on_target, target_spec

    for target in DeploymentTarget.objects.filter(
        is_local=True, environment=Environment.PRODUCTION
    ):
        version = live_version_on_target(target)
        if version is None:
            continue
        spec = target_spec(target)
        for host in spec.hosts:
            connection = open_connection(spec, host)
            try:
                restart(connection, spec.layout_for(host, version.name), timeout=60)
                say(f"  {target.name}: its engine serves {version} again (service started)")
            except StepFailed as exc:
                say(f"  {target.name}: its engine did not start: {exc}")
            finally:
                connection.close()


def resume_point(*, users: dict[str, Any], say: Say) -> tuple[int, ModelVersion | None]:
    """The first demo step not done, from the registry's record, and the version it takes.

    The steps: 0 the first version to production, 1 the second, 2 the rollback, 3 the
    monitoring, 4 the audit check. A version left before production is rejected first.
    """
    from models_registry.services import lifecycle

    versions = list(ModelVersion.objects.filter(symbol=DEMO_SYMBOL).order_by("created_at", "id"))
    for version in versions:
        if version.state in lifecycle.PRE_PRODUCTION_STATES:
            lifecycle.model_version_reject(
                model_version=version,
                rejected_by=users["approver"],
                comment="Demo re-run: the previous run stopped before this version reached "
                "production; it is set aside and the step runs again.",
            )
            say(f"  {version} was left {version.get_state_display().lower()}: rejected, set aside")
    walked = [v for v in versions if v.state in (ModelState.IN_PRODUCTION, ModelState.RETIRED)]
    if not walked:
        return 0, None
    if len(walked) == 1:
        return 1, walked[0]
    first, second = walked[0], walked[-1]
    if second.state == ModelState.IN_PRODUCTION:
        return 2, second
    first.refresh_from_db()
    return (4 if first.health == HealthStatus.DEGRADED else 3), first


def _lifecycle_steps() -> list[Callable[..., ModelVersion | None]]:
    from models_registry import demo_steps

    return demo_steps.STEPS
