"""Every admin page of the workflow at 10,000 versions and 100,000 audit events (issue 15).

    .venv/bin/python benchmarks/bench_admin_pages.py [--repeats 10] [--json PATH]

Builds a fresh PostgreSQL database (``bench_registry.bench_database``: DATABASE_URL's server,
or a throwaway one through ``tests.stack``) with bulk_create: 10,000 versions, 20,000
deployments, 100,000 hash-chained audit events, a validation run per version and a year of
daily scheduled re-validations of the version in production. Then renders each page with
Django's test client, signed in as a staff user who holds every role, and prints per page the
median and p95 over ``--repeats`` requests (after one warm-up) and the queries, against the
target: at most 300 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _figures
from benchmarks.bench_registry import (
    BASE_EVENTS,
    DEPLOYMENTS,
    VERSIONS,
    append_audit_events,
    bench_database,
    create_deployments,
    create_versions,
    setup_django,
    timed,
)

TARGET_MS = 300.0
SCHEDULED_DAYS = 365
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def create_runs(version_ids: list[int]) -> None:
    """A backtest run per version, and a year of scheduled runs of the newest live version."""
    from models_registry.models import ModelState, ModelVersion, RunStatus, ValidationRun

    def run(version_id: int, day: int, **extra: Any) -> ValidationRun:
        start = T0 + timedelta(days=day)
        return ValidationRun(
            model_version_id=version_id,
            status=RunStatus.PASSED if day % 5 else RunStatus.FAILED,
            passed=bool(day % 5),
            window_start=start,
            window_end=start + timedelta(days=30),
            metrics={"sharpe": 1 + (day % 7) / 10, "total_return": (day % 11 - 5) / 1000,
                     "max_drawdown": -(day % 13) / 500, "trades": day % 40},
            gate_results=[{"name": "min_sharpe", "passed": bool(day % 5), "value": 1.1,
                           "threshold": 0.5}],
            **extra,
        )  # fmt: skip

    rows = [run(pk, n % 300) for n, pk in enumerate(version_ids)]
    live = live_version_id()
    scheduled = ValidationRun.KIND_SCHEDULED
    rows += [
        run(live, day, kind=scheduled, scheduled_slot=f"{T0 + timedelta(days=day):%Y-%m-%d}")
        for day in range(SCHEDULED_DAYS)
    ]
    # Fixture data only: finished runs are born finished here, past the database's "born
    # queued" trigger through the transition gate (a product row never is).
    from django.db import transaction

    from models_registry.guards import transition_write

    with transaction.atomic(), transition_write("benchmark fixture"):
        ValidationRun.objects.bulk_create(rows, batch_size=5000)
    assert ModelVersion.objects.filter(pk=live, state=ModelState.IN_PRODUCTION).exists()


def newest(state: str) -> int:
    from models_registry.models import ModelVersion

    return ModelVersion.objects.filter(state=state).order_by("-id").values_list("id", flat=True)[0]


def live_version_id() -> int:
    from models_registry.models import ModelState

    return newest(ModelState.IN_PRODUCTION)


def serve_live_version() -> None:
    """The newest in-production version is what a production target served last."""
    from models_registry.models import (
        Deployment,
        DeploymentStatus,
        DeploymentTarget,
        Environment,
        ModelVersion,
    )

    live = ModelVersion.objects.get(pk=live_version_id())
    target = DeploymentTarget.objects.filter(environment=Environment.PRODUCTION).first()
    if target is None:
        raise SystemExit("bench_admin_pages: the generated data has no production target")
    finished = T0 + timedelta(days=400)
    from django.db import transaction

    from models_registry.guards import transition_write

    with transaction.atomic(), transition_write("benchmark fixture"):
        Deployment.objects.create(
            target=target, model_version=live, status=DeploymentStatus.SUCCEEDED,
            sha256=live.onnx_sha256, started_at=finished - timedelta(seconds=30),
            finished_at=finished,
        )  # fmt: skip


def staff_with_every_role() -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from models_registry import roles

    user = get_user_model().objects.create_user("bench_staff", "s@example.test", is_staff=True)
    for name in roles.ROLE_PERMISSIONS:
        user.groups.add(Group.objects.get(name=name))
    return user


def workflow_pages() -> list[tuple[str, str]]:
    from django.urls import reverse

    from models_registry.models import ModelState

    staged, approved, live = (
        newest(ModelState.STAGED), newest(ModelState.APPROVED), live_version_id()
    )  # fmt: skip

    def action(pk: int, name: str) -> str:
        return reverse("admin:models_registry_version_action", args=[pk, name])

    def page(pk: int) -> str:
        return reverse("admin:models_registry_modelversion_change", args=[pk])

    return [
        ("index (fleet home)", reverse("admin:index")),
        ("version list", reverse("admin:models_registry_modelversion_changelist")),
        ("version page (staged)", page(staged)),
        ("version page (in production)", page(live)),
        ("approve page", action(staged, "approve_versions")),
        ("deploy page", action(approved, "deploy_versions")),
        ("rollback page", action(live, "rollback_production")),
        ("audit event list", reverse("admin:models_registry_auditevent_changelist")),
        ("deployment list", reverse("admin:models_registry_deployment_changelist")),
        ("health page", reverse("admin:models_registry_modelversion_health", args=[live])),
    ]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(client: Any, url: str, repeats: int, slowest: int = 0) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm-up: template loading, content types, permissions
    timings = []
    queries = 0
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
        queries = len(captured)
    for query in sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:slowest]:
        print(f"      {float(query['time']) * 1000:6.1f} ms  {query['sql'][:300]}")
    return timings, queries


def bench(repeats: int, slowest: int = 0) -> bool:
    from django.test import Client

    client = Client()
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="bench_staff"))
    print(f"admin workflow pages, {repeats} renders each (target <= {TARGET_MS:.0f} ms):")
    print(f"  {'page':<30} {'median':>9} {'p95':>9} {'queries':>8}")
    all_met = True
    for label, url in workflow_pages():
        timings, queries = measure(client, url, repeats, slowest)
        median, high = statistics.median(timings), p95(timings)
        met = high <= TARGET_MS
        all_met &= met
        print(f"  {label:<30} {median:7.1f} ms {high:7.1f} ms {queries:8d}  "
              f"{'OK' if met else 'OVER TARGET'}", flush=True)  # fmt: skip
        _figures.record(
            f"admin {label}, median", median, "ms", target=("tradebot", "<=", TARGET_MS)
        )
        _figures.record(f"admin {label}, p95", high, "ms", target=("tradebot", "<=", TARGET_MS))
    return all_met


REUSED_DATABASE = "tradebot_bench_admin"


@contextlib.contextmanager
def reused_database() -> Iterator[str]:
    """--reuse: a kept database on DATABASE_URL's server, built once (for profiling fixes)."""
    from benchmarks.bench_registry import _admin_sql

    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        raise SystemExit("--reuse needs DATABASE_URL=postgres://... (a server that stays up)")
    with contextlib.suppress(Exception):  # it exists already: reuse it
        _admin_sql(server, f"CREATE DATABASE {REUSED_DATABASE}")
    yield urlunsplit(urlsplit(server)._replace(path="/" + REUSED_DATABASE))


def build() -> None:
    version_ids, _ = timed(f"bulk-create {VERSIONS} versions", create_versions, VERSIONS)
    timed(f"bulk-create {DEPLOYMENTS} deployments", create_deployments, DEPLOYMENTS, version_ids)
    serve_live_version()
    timed(f"bulk-create {VERSIONS + SCHEDULED_DAYS} validation runs", create_runs, version_ids)
    timed(f"hash and bulk-create {BASE_EVENTS} audit events", append_audit_events, BASE_EVENTS)
    staff_with_every_role()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh tables: give the planner its statistics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--reuse", action="store_true", help=f"keep and reuse {REUSED_DATABASE} on DATABASE_URL"
    )
    parser.add_argument("--slowest", type=int, default=0, help="print each page's N slowest SQL")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON rows here")
    args = parser.parse_args()
    with reused_database() if args.reuse else bench_database() as url:
        setup_django(url)
        from models_registry.models import ModelVersion

        if not ModelVersion.objects.exists():
            build()
        met = bench(args.repeats, args.slowest)
    _figures.write(args.json)
    print("every page within the target" if met else "some pages are OVER TARGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
