"""verify_audit_log on N events in PostgreSQL: seconds, events/s, CPU and peak memory.

    .venv/bin/python benchmarks/bench_audit_verify.py [--events 1000000] [--keyed]
        [--runs 3] [--compare] [--json PATH]

The chain is written with the writer's own hash (compute_row_hash) and loaded with COPY.
Then `manage.py verify_audit_log --json` runs as its own process, so its peak RSS and CPU
are the command's alone, not the loader's. Target (issue 17): 1,000,000 events in at most
5 s, streamed, memory bounded. `--compare` also times, on the same rows in the same run,
the reading path verify_audit_chain had before issue 17 (ORM values_list, the content dict
per row): on a loaded machine that ratio says more than the seconds do.
`--keyed` writes and verifies the chain under an HMAC key (AUDIT_HMAC_KEY).
Uses DATABASE_URL's PostgreSQL if set (in a scratch database), else a throwaway one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _figures
from benchmarks.bench_registry import bench_database, setup_django

if TYPE_CHECKING:
    from models_registry.services.audit.chain import RowContent

PROJECT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0
COLUMNS = (
    "event_time", "actor_id", "actor_repr", "event_type", "object_type", "object_id",
    "object_repr", "data", "prev_hash", "row_hash", "payload",
)  # fmt: skip


def append_events(count: int, key: bytes | None) -> None:
    """`count` chained events, hashed as the writer hashes them, loaded with one COPY."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection

    from models_registry.models import AuditEvent
    from models_registry.services.audit.chain import (
        GENESIS_HASH,
        _digester,
        _normalise_data,
        row_payload,
    )

    digest = _digester(key)

    prev, when = GENESIS_HASH, datetime(2024, 1, 1, tzinfo=UTC)
    sql = f"COPY {AuditEvent._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for n in range(count):
            when += timedelta(seconds=1)
            fields: RowContent = {
                "event_time": when, "actor_id": None, "actor_repr": "system",
                "event_type": "model_version_validated", "object_type": "ModelVersion",
                "object_id": str(n % 1000), "object_repr": f"btcusdt_price v{n % 1000}",
                "data": _normalise_data(
                    {"old_state": "trained", "new_state": "validated", "run": n}
                ),
            }  # fmt: skip
            payload = row_payload(prev_hash=prev, **fields)  # as audit_event_record stores it
            row_hash = digest(payload)
            copy.write_row([
                fields["event_time"], fields["actor_id"], fields["actor_repr"],
                fields["event_type"], fields["object_type"], fields["object_id"],
                fields["object_repr"], json.dumps(fields["data"]), prev, row_hash, payload,
            ])  # fmt: skip
            prev = row_hash
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {AuditEvent._meta.db_table}")


# Runs a command and writes its peak RSS (KiB) and CPU seconds to a file. Linux carries a
# process's peak RSS over into what it forks and execs, so a command started straight from
# this (by then large) process would report this one's peak; started from this small
# launcher, its figures are its own.
_LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); sys.exit(code)"
)


def launched(command: list[str], env: dict[str, str] | None = None) -> tuple[Any, float, float]:
    """(the completed launcher, peak RSS in MiB, CPU seconds) of `command`."""
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as figures:
        result = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, figures.name, *command],
            cwd=PROJECT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        text = figures.read().split()
    if result.returncode != 0 or len(text) != 2:
        raise SystemExit(f"{command[1:]} failed: {result.stdout}{result.stderr}")
    return result, int(text[0]) / 1024, float(text[1])


def verify_in_a_process(database_url: str) -> dict:
    """The command as an operator runs it; its own wall time, CPU and peak RSS."""
    started = time.perf_counter()
    result, peak_mib, cpu = launched(
        [sys.executable, "manage.py", "verify_audit_log", "--json"],
        env={**os.environ, "DATABASE_URL": database_url},
    )
    report = json.loads(result.stdout)
    report["process_seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = cpu
    report["peak_rss_mib"] = peak_mib
    return report


def idle_command_rss_mib() -> float:
    """Peak RSS of the same process doing nothing but start Django: the baseline."""
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'tradebot.settings'); django.setup(); import models_registry.services.audit"
    )
    return launched([sys.executable, "-c", code])[1]


def floor_seconds(key: bytes | None) -> tuple[float, float]:
    """The floor of verifying, same rows, same run: (COPY of the whole table to the client,
    discarded), and (SHA-256, or the HMAC when keyed, of every row's hashed bytes, already
    in memory). Verifying has to read the rows and hash them; nothing less is possible."""
    from django.db import connection

    from models_registry.models import AuditEvent
    from models_registry.services.audit.chain import _digester

    table = AuditEvent._meta.db_table
    connection.ensure_connection()
    raw = connection.connection
    started = time.perf_counter()
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} TO STDOUT") as copy:
        for _block in copy:
            pass
    copy_seconds = time.perf_counter() - started
    # Hashing timed alone, batch by batch of payloads already in memory: this process stays
    # small, as the peak RSS of the commands it forks afterwards starts from its size.
    digest, hash_seconds, last_id = _digester(key), 0.0, 0
    while True:
        with raw.cursor() as cursor:
            cursor.execute(
                f"SELECT id, payload FROM {table} WHERE id > %s ORDER BY id LIMIT 50000",
                [last_id],
            )
            rows = cursor.fetchall()
        if not rows:
            return copy_seconds, hash_seconds
        payloads = [bytes(row[1]) for row in rows]
        started = time.perf_counter()
        for payload in payloads:
            digest(payload)
        hash_seconds += time.perf_counter() - started
        last_id = rows[-1][0]


def halves_seconds(key: bytes | None, chunk_size: int = 20_000) -> tuple[float, float]:
    """The two halves of the fast walk, each alone on one connection, one after the other:
    (reading the rows and hashing their payloads, checking every batch's columns against
    its payloads in PostgreSQL). verify_audit_log runs them at once, the check on two
    connections of its own."""
    import psycopg
    from django.db import connection

    from models_registry.services.audit.chain import _digester
    from models_registry.services.audit.payload import CHECK_BATCH_SQL, READ_BATCH_SQL

    digest = _digester(key)
    params = connection.get_connection_params()
    bounds = []
    with psycopg.connect(**params, autocommit=True) as raw:
        started, after = time.perf_counter(), 0
        while True:
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(READ_BATCH_SQL, {"after": after, "n": chunk_size}, binary=True)
                row = cursor.fetchone()
            if not row or not row[0]:
                break
            list(map(digest, row[3]))
            bounds.append((after, row[0][-1]))
            after = row[0][-1]
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for after, last in bounds:
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(CHECK_BATCH_SQL, {"after": after, "last": last}, binary=True)
                assert cursor.fetchone() is not None
        return read_seconds, time.perf_counter() - started


def orm_reference_seconds(key: bytes | None) -> float:
    """verify's reading and hashing as before issue 17: model values, one dict per row."""
    from models_registry.models import AuditEvent
    from models_registry.services.audit.chain import GENESIS_HASH, compute_row_hash

    columns = (
        "id", "prev_hash", "row_hash", "event_time", "actor_id", "actor_repr", "event_type",
        "object_type", "object_id", "object_repr", "data",
    )  # fmt: skip
    started, last_id, expected = time.perf_counter(), 0, GENESIS_HASH
    while rows := list(
        AuditEvent.objects.filter(id__gt=last_id).order_by("id").values_list(*columns)[:50_000]
    ):
        for pk, prev, row_hash, when, actor_id, actor, etype, otype, oid, orepr, data in rows:
            recomputed = compute_row_hash(
                prev_hash=prev, event_time=when, actor_id=actor_id, actor_repr=actor,
                event_type=etype, object_type=otype, object_id=oid, object_repr=orepr,
                data=data, key=key,
            )  # fmt: skip
            if prev != expected or recomputed != row_hash:
                raise SystemExit(f"reference path: row {pk} does not verify")
            expected = row_hash
        last_id = rows[-1][0]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keyed", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="verify and floor runs (median)")
    parser.add_argument("--compare", action="store_true", help="also time the old ORM path")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON rows here")
    args = parser.parse_args()
    key = b"bench-key-outside-the-database" if args.keyed else None
    if key:
        os.environ["AUDIT_HMAC_KEY"] = key.decode()
    with bench_database() as url:
        setup_django(url)
        started = time.perf_counter()
        append_events(args.events, key)
        print(f"hash and COPY {args.events} events: {time.perf_counter() - started:.1f} s")
        # Interleaved, the median of --runs of each: on a shared machine one run of either
        # can land in someone else's busy second.
        reports, floors = [], []
        for _ in range(args.runs):
            reports.append(verify_in_a_process(url))
            floors.append(floor_seconds(key))
        report = sorted(reports, key=lambda r: r["seconds"])[len(reports) // 2]
        copy_seconds, hash_seconds = sorted(floors, key=sum)[len(floors) // 2]
        baseline = idle_command_rss_mib()
        seconds, checked = report["seconds"], report["checked"]
        assert all(r["ok"] and r["checked"] == args.events for r in reports), reports
        print(
            f"verify_audit_log {checked} events ({'keyed' if report['keyed'] else 'unkeyed'}), "
            f"median of {args.runs}: "
            f"{seconds:.2f} s ({report['process_seconds']:.2f} s with start-up), "
            f"{checked / seconds:,.0f} events/s, CPU {report['cpu_seconds']:.2f} s in the "
            f"command, peak RSS {report['peak_rss_mib']:.0f} MiB (Django alone "
            f"{baseline:.0f} MiB); target <= {TARGET_SECONDS:g} s: "
            f"{'met' if seconds <= TARGET_SECONDS else 'MISSED'}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        floor = copy_seconds + hash_seconds
        print(
            f"floor, same rows, median of {args.runs}: COPY to the client {copy_seconds:.2f} s + "
            f"{'HMAC' if key else 'SHA-256'} of the hashed bytes {hash_seconds:.2f} s = "
            f"{floor:.2f} s; verify / floor = {seconds / floor:.2f}x (target <= 1.5x); "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        read_hash, check = halves_seconds(key)
        print(
            f"its two halves, each alone: reading the rows and hashing them {read_hash:.2f} s, "
            f"checking their columns against their payloads (PostgreSQL) {check:.2f} s; "
            "verify runs them at once, the check on two connections",
            flush=True,
        )
        reference = orm_reference_seconds(key) if args.compare else None
        if reference is not None:
            print(
                f"same rows through the pre-issue-17 ORM path: {reference:.2f} s "
                f"({checked / reference:,.0f} events/s); ratio {reference / seconds:.2f}x"
            )
    label = f"verify_audit_log, {args.events:,} events"
    _figures.record(
        f"{label} vs its floor", seconds, "s", peer=floor,
        peer_label="COPY + SHA-256, same rows", target=("ratio", ">=", 1 / 1.5),
    )  # fmt: skip
    _figures.record(
        label, seconds, "s", peer=reference,
        peer_label="old ORM path" if reference is not None else None,
        target=("tradebot", "<=", TARGET_SECONDS),
    )  # fmt: skip
    _figures.record(f"{label}: peak RSS", report["peak_rss_mib"], "MiB", peer=baseline,
                    peer_label="Django alone")  # fmt: skip
    _figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
