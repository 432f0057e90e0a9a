"""Registry figures on PostgreSQL: bulk data, and `verify_audit_log` on a million events.

    .venv/bin/python benchmarks/bench_registry.py [--events 1000000] [--keep]

Uses the PostgreSQL server in DATABASE_URL when it is set (in a separate
database, ``tradebot_bench``, created and dropped here); otherwise starts a
throwaway PostgreSQL through ``tests.stack``. Prints one line per figure.

Targets (issue 7): with 10,000 versions, 100,000 audit events and 20,000
deployments, each admin list page renders in under 300 ms; verify_audit_log
checks 1,000,000 events in under 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from models_registry.services.audit.chain import RowContent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

BENCH_DATABASE = "tradebot_bench"
VERSIONS = 10_000
DEPLOYMENTS = 20_000
BASE_EVENTS = 100_000
BATCH = 5_000


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database for the benchmark on a PostgreSQL server, dropped afterwards."""
    from tests.stack import throwaway_postgres

    with contextlib.ExitStack() as stack:
        server = os.environ.get("DATABASE_URL", "")
        if not server.startswith("postgres"):
            server = stack.enter_context(throwaway_postgres())
            print(f"started throwaway PostgreSQL at {server}", flush=True)
        _admin_sql(server, f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        _admin_sql(server, f"CREATE DATABASE {BENCH_DATABASE}")
        try:
            yield urlunsplit(urlsplit(server)._replace(path="/" + BENCH_DATABASE))
        finally:
            from django.db import connections

            connections.close_all()
            _admin_sql(server, f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")


def _admin_sql(server_url: str, sql: str) -> None:
    import psycopg

    url = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")  # the test Client's host
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(label: str, func, *args, **kwargs):
    started = time.perf_counter()
    result = func(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.2f} s", flush=True)
    return result, seconds


# --- bulk data ------------------------------------------------------------------------


def create_versions(count: int) -> list[int]:
    from django.contrib.auth import get_user_model
    from django.db.models import QuerySet

    from models_registry.models import ModelState, ModelVersion

    user = get_user_model().objects.create_user("bench_engineer", "bench@example.test")
    states = [s for s, _ in ModelState.choices]
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
    rows = []
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        name = f"{symbol.lower()}_{'sentiment' if n % 2 else 'price'}"
        sha = f"{n:064x}"
        rows.append(
            ModelVersion(
                name=name,
                version=n + 1,
                symbol=symbol,
                kind=name.rsplit("_", 1)[1],
                state=states[n % len(states)],
                created_by=user,
                artifact_dir=f"models/{sha}",
                onnx_file=f"{name}.onnx",
                onnx_sha256=sha,
                metadata_file=f"{name}_metadata.json",
                metadata_sha256=sha,
                metadata={"name": name, "version": n + 1, "window": 48},
            )
        )
    # Fixture data only: a plain QuerySet skips the registry's guard against creating
    # versions beyond 'trained', which the product's own managers refuse, and the
    # transition gate lets the rows past the database's own trigger for the same rule.
    from django.db import transaction

    from models_registry.guards import transition_write

    with transaction.atomic(), transition_write("benchmark fixture"):
        QuerySet[ModelVersion](ModelVersion).bulk_create(rows, batch_size=BATCH)
    return list(ModelVersion.objects.order_by("id").values_list("id", flat=True))


def create_deployments(count: int, version_ids: list[int]) -> None:
    from models_registry.models import (
        Deployment,
        DeploymentStatus,
        DeploymentTarget,
        Environment,
    )

    targets = [
        DeploymentTarget.objects.create(name=f"{env}-{i}", environment=env)
        for env in (Environment.STAGING, Environment.PRODUCTION)
        for i in range(5)
    ]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(count):
        finished = start + timedelta(minutes=10 * n)
        rows.append(
            Deployment(
                target=targets[n % len(targets)],
                model_version_id=version_ids[n % len(version_ids)],
                status=DeploymentStatus.SUCCEEDED if n % 7 else DeploymentStatus.FAILED,
                started_at=finished - timedelta(seconds=40),
                finished_at=finished,
                sha256=f"{n % len(version_ids):064x}",
                steps=[{"name": "upload", "ok": True}, {"name": "restart", "ok": True}],
            )
        )
    # Fixture data only: finished deployments are born finished here, past the database's
    # "born queued" trigger through the transition gate (as the versions above).
    from django.db import transaction

    from models_registry.guards import transition_write

    with transaction.atomic(), transition_write("benchmark fixture"):
        Deployment.objects.bulk_create(rows, batch_size=BATCH)


def append_audit_events(count: int) -> None:
    """A valid chain continuing from the current tail, hashed here and bulk-inserted."""
    from models_registry.models import AuditEvent
    from models_registry.services.audit.chain import GENESIS_HASH, _normalise_data, compute_row_hash

    tail = AuditEvent.objects.order_by("-id").values_list("row_hash", "event_time").first()
    prev_hash, when = tail if tail else (GENESIS_HASH, datetime(2024, 1, 1, tzinfo=UTC))
    states = ["trained", "validated", "paper_tested", "staged", "approved"]
    batch: list[AuditEvent] = []
    for n in range(count):
        when = when + timedelta(seconds=1)
        fields: RowContent = {
            "event_time": when,
            "actor_id": None,
            "actor_repr": "system",
            "event_type": "model_version_validated",
            "object_type": "ModelVersion",
            "object_id": str(n % VERSIONS + 1),
            "object_repr": f"btcusdt_price v{n % VERSIONS + 1}",
            "data": _normalise_data(
                {"old_state": states[n % 4], "new_state": states[n % 4 + 1], "run": n}
            ),
        }
        row_hash = compute_row_hash(prev_hash=prev_hash, **fields)
        batch.append(AuditEvent(prev_hash=prev_hash, row_hash=row_hash, **fields))
        prev_hash = row_hash
        if len(batch) == BATCH:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        AuditEvent.objects.bulk_create(batch)


# --- figures ----------------------------------------------------------------------------


def verify_audit_log_seconds() -> tuple[dict, float]:
    from django.core.management import call_command

    out = io.StringIO()
    _, seconds = timed("  verify_audit_log", call_command, "verify_audit_log", "--json", stdout=out)
    report = json.loads(out.getvalue())
    if not report["ok"]:
        raise SystemExit(f"the benchmark chain does not verify: {report}")
    return report, seconds


ADMIN_LIST_PAGES = (
    "admin:models_registry_modelversion_changelist",
    "admin:models_registry_deployment_changelist",
    "admin:models_registry_auditevent_changelist",
    "admin:models_registry_validationrun_changelist",
    "admin:models_registry_approval_changelist",
)


def bench_admin_list_pages(repeats: int = 5) -> None:
    """Admin changelist render times and query counts (issue 7: < 300 ms, fixed queries)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    admin_user = get_user_model().objects.create_superuser("bench_admin", "a@example.test", "x")
    client = Client()
    client.force_login(admin_user)
    print("admin list pages (median of", repeats, "renders; target < 300 ms):")
    for name in ADMIN_LIST_PAGES:
        url = reverse(name)
        client.get(url)  # warm caches
        timings = []
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                timings.append(time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        median_ms = sorted(timings)[len(timings) // 2] * 1000
        verdict = "OK" if median_ms < 300 else "OVER TARGET"
        print(f"  {url:<50} {median_ms:7.1f} ms  {len(captured):3d} queries  {verdict}")


def cockpit_urls() -> list[tuple[str, str]]:
    """The workflow pages of issue 15, on versions the bulk data put in each state."""
    from django.urls import reverse

    from models_registry.models import ModelState, ModelVersion

    def newest(state: str) -> int:
        return (
            ModelVersion.objects.filter(state=state).order_by("-id").values_list("id", flat=True)[0]
        )

    staged, live, approved = (
        newest(ModelState.STAGED), newest(ModelState.IN_PRODUCTION), newest(ModelState.APPROVED)
    )  # fmt: skip

    def action(pk: int, name: str) -> str:
        return reverse("admin:models_registry_version_action", args=[pk, name])

    def page(pk: int) -> str:
        return reverse("admin:models_registry_modelversion_change", args=[pk])

    versions = reverse("admin:models_registry_modelversion_changelist")
    return [
        ("version page (staged)", page(staged)),
        ("version page (in production)", page(live)),
        ("health page", reverse("admin:models_registry_modelversion_health", args=[live])),
        ("approve page", action(staged, "approve_versions")),
        ("reject page", action(staged, "reject_versions")),
        ("deploy page", action(approved, "deploy_versions")),
        ("rollback page", action(live, "rollback_production")),
        ("version list, filtered", versions + "?state__exact=staged"),
    ]  # fmt: skip


def bench_pages(title: str, urls: list[tuple[str, str]], repeats: int = 5) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(_superuser())
    print(f"{title} (median of {repeats} renders; target < 300 ms):")
    for label, url in urls:
        client.get(url)
        timings = []
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                timings.append(time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        median_ms = sorted(timings)[len(timings) // 2] * 1000
        verdict = "OK" if median_ms < 300 else "OVER TARGET"
        print(f"  {label:<32} {median_ms:7.1f} ms  {len(captured):3d} queries  {verdict}")


def _superuser() -> User:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(is_superuser=True).first()
    if user is None:
        raise SystemExit("no superuser in the benchmark database: create the fixture data first")
    return user


def bench_audit_export() -> None:
    """Streaming every audit event as JSON Lines (an auditor's full export)."""
    from django.http import StreamingHttpResponse
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(_superuser())
    start = time.perf_counter()
    response = client.get(reverse("admin:models_registry_auditevent_export", args=["jsonl"]))
    if not isinstance(response, StreamingHttpResponse):
        raise SystemExit(f"the audit export did not stream: {type(response).__name__}")
    rows = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    seconds = time.perf_counter() - start
    print(f"  export all audit events as JSON Lines: {rows} rows in {seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to verify at the end")
    args = parser.parse_args()
    with bench_database() as url:
        setup_django(url)
        version_ids, _ = timed(f"bulk-create {VERSIONS} versions", create_versions, VERSIONS)
        timed(
            f"bulk-create {DEPLOYMENTS} deployments", create_deployments, DEPLOYMENTS, version_ids
        )
        timed(f"hash and bulk-create {BASE_EVENTS} audit events", append_audit_events, BASE_EVENTS)
        print(f"verify {BASE_EVENTS} events:")
        verify_audit_log_seconds()
        bench_admin_list_pages()
        bench_pages("cockpit and decision pages", cockpit_urls())
        bench_audit_export()
        extra = max(args.events - BASE_EVENTS, 0)
        if extra:
            timed(f"hash and bulk-create {extra} more audit events", append_audit_events, extra)
        print(f"verify {max(args.events, BASE_EVENTS)} events (target < 30 s):")
        report, seconds = verify_audit_log_seconds()
        rate = report["checked"] / seconds
        verdict = "OK" if seconds < 30 else "OVER TARGET"
        print(f"  {report['checked']} events, {rate:,.0f} events/s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
