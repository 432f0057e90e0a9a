"""verify_audit_chain on N events in PostgreSQL: seconds, events/s and peak memory.

    .venv/bin/python benchmarks/bench_audit_verify.py --events 1000000 [--keyed]

`--keyed` writes and verifies the chain under an HMAC key (AUDIT_HMAC_KEY).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_registry import HashedAuditFields, bench_database, setup_django


def append_events(count: int, key: bytes | None) -> None:
    from datetime import UTC, datetime, timedelta

    from models_registry.models import AuditEvent
    from models_registry.services.audit import GENESIS_HASH, _normalise_data, compute_row_hash

    prev, when, batch = GENESIS_HASH, datetime(2024, 1, 1, tzinfo=UTC), []
    for n in range(count):
        when += timedelta(seconds=1)
        fields: HashedAuditFields = {
            "event_time": when, "actor_id": None, "actor_repr": "system",
            "event_type": "model_version_validated", "object_type": "ModelVersion",
            "object_id": str(n % 1000), "object_repr": f"btcusdt_price v{n % 1000}",
            "data": _normalise_data({"old_state": "trained", "new_state": "validated", "run": n}),
        }  # fmt: skip
        row_hash = compute_row_hash(prev_hash=prev, key=key, **fields)
        batch.append(AuditEvent(prev_hash=prev, row_hash=row_hash, **fields))
        prev = row_hash
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        AuditEvent.objects.bulk_create(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keyed", action="store_true")
    args = parser.parse_args()
    key = b"bench-key-outside-the-database" if args.keyed else None
    if key:
        os.environ["AUDIT_HMAC_KEY"] = key.decode()
    with bench_database() as url:
        setup_django(url)
        from models_registry.services.audit import verify_audit_chain

        started = time.perf_counter()
        append_events(args.events, key)
        print(f"hash and bulk-create {args.events} events: {time.perf_counter() - started:.1f} s")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        report = verify_audit_chain()
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.ok, report
        print(
            f"verify {report.checked} events ({'keyed' if report.keyed else 'unkeyed'}): "
            f"{seconds:.1f} s, {report.checked / seconds:,.0f} events/s, "
            f"peak RSS {after / 1024:.0f} MiB (grew {(after - before) / 1024:.0f} MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
