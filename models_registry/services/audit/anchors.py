"""Anchors: the chain head recorded outside the table (the append-only anchor file, and
the copy each host gets at deploy), parsed back and compared with each other."""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db import transaction

from models_registry.models import AuditEvent
from models_registry.services.audit.canonical import canonical_json
from models_registry.services.audit.key import _setting, audit_hmac_key


@dataclass(frozen=True)
class Anchor:
    """The chain head at one moment, as recorded outside the table."""

    last_id: int
    row_hash: str
    source: str = ""


def audit_anchor_file() -> Path | None:
    path = _setting("AUDIT_ANCHOR_FILE")
    return Path(path) if path else None


def anchor_line(anchor: Anchor, key: bytes | None) -> str:
    """One JSON line; with a key, MAC'd so a forged anchor is refused too."""
    body = {"last_id": anchor.last_id, "row_hash": anchor.row_hash}
    document = {**body, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if key is not None:
        document["mac"] = hmac.new(key, canonical_json(body).encode(), "sha256").hexdigest()
    return canonical_json(document)


def parse_anchor_lines(
    lines: Iterable[str], *, source: str, key: bytes | None
) -> tuple[list[Anchor], list[str]]:
    """The anchors in `lines`, and a problem for each line that is not a valid anchor."""
    anchors, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
            last_id, row_hash = int(document["last_id"]), str(document["row_hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"{source} line {number} is not an anchor")
            continue
        if key is not None:
            body = {"last_id": last_id, "row_hash": row_hash}
            mac = hmac.new(key, canonical_json(body).encode(), "sha256").hexdigest()
            if not hmac.compare_digest(mac, str(document.get("mac", ""))):
                problems.append(f"{source} line {number}: anchor MAC is wrong (forged anchor?)")
                continue
        anchors.append(Anchor(last_id, row_hash, f"{source} line {number}"))
    return anchors, problems


def chain_head() -> Anchor | None:
    row = AuditEvent.objects.order_by("-id").values_list("id", "row_hash").first()
    return Anchor(row[0], row[1]) if row else None


def anchor_append(anchor: Anchor | None = None) -> Anchor | None:
    """Append the chain head to the anchor file (O_APPEND, fsync). No file set: no-op."""
    path = audit_anchor_file()
    anchor = anchor or chain_head()
    if path is None or anchor is None:
        return anchor
    line = anchor_line(anchor, audit_hmac_key()) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor


def anchor_text() -> str | None:
    """The current head as one anchor line, for the hosts' copy at each deploy."""
    anchor = chain_head()
    return anchor_line(anchor, audit_hmac_key()) if anchor else None


_last_anchored = threading.local()


def _anchor_on_commit() -> None:
    """After the transaction commits, anchor its head once, however many events it wrote
    (each event registers a callback; the ones after the first find the head anchored).
    A rolled-back transaction runs none of them."""

    def anchor() -> None:
        head = chain_head()
        if head is None or getattr(_last_anchored, "head", None) == head:
            return
        anchor_append(head)
        _last_anchored.head = head

    transaction.on_commit(anchor)


def _load_anchors(
    key: bytes | None, extra: Iterable[tuple[str, str]]
) -> tuple[list[Anchor], list[str]]:
    anchors, problems = [], []
    path = audit_anchor_file()
    sources = list(extra)
    if path is not None and path.exists():
        sources.insert(0, (str(path), path.read_text(encoding="utf-8")))
    for source, text in sources:
        found, wrong = parse_anchor_lines(text.splitlines(), source=source, key=key)
        anchors += found
        problems += wrong
    return anchors, problems


def anchors_in_conflict(anchors: Iterable[Anchor]) -> list[str]:
    """Two anchors of one event id with different hashes: one of them was forged or the
    chain was rewritten between them (the walk compares each id with one anchor only)."""
    first: dict[int, Anchor] = {}
    problems = []
    for anchor in anchors:
        seen = first.setdefault(anchor.last_id, anchor)
        if seen.row_hash != anchor.row_hash:
            problems.append(
                f"the anchors disagree on event #{anchor.last_id}: {seen.source} says "
                f"{seen.row_hash[:12]}, {anchor.source} says {anchor.row_hash[:12]} "
                "(the chain or an anchor was rewritten)"
            )
    return problems
