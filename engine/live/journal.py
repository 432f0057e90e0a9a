"""Append-only, fsynced journal of what the engine decided and did.

One JSON object per line: `seq` (1, 2, 3, ...), `at` (UTC wall time), `type`, the payload
and `sha` (a checksum of the rest of the line). The journal is the engine's memory across
restarts and deploys: position, cash, the order pending for the next open and the kill
switch are rebuilt from it. It is validated on load; a corrupt journal is an error that
names the file and line, never something skipped silently, because trading from a wrong
position is worse than not trading.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Fields each record type must carry (beyond seq, at, type, sha).
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "session_start": ("mode", "model_name", "model_version", "model_sha256", "pid"),
    "decision": ("candle", "prediction", "target"),
    "order": ("order_id", "candle", "side", "quantity", "reason"),
    "fill": ("order_id", "candle", "side", "quantity", "price", "fee"),
    "order_rejected": ("order_id", "candle", "side", "quantity", "reason"),
    # Sent, but no answer: position and cash were re-read from the exchange afterwards.
    "order_unknown": ("order_id", "candle", "side", "quantity", "reason"),
    "state": ("last_candle", "cash", "quantity", "pending_target", "equity"),
    "kill_switch": ("latched", "reason"),
    "session_stop": ("reason",),
    # First record of a journal that continues a rotated (archived) one.
    "carried_over": ("archive", "archive_sha256", "archive_records", "order_candles"),
}

# Past this many records a journal is archived at start-up and continued in a fresh file,
# so reading it (which every start does) stays fast on a host that runs for years.
ROTATE_AFTER_RECORDS = 20_000


class JournalError(RuntimeError):
    """The journal cannot be trusted; the message names the file and line."""


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class JournalState:
    """What a restart needs, rebuilt from the journal's records."""

    last_candle: str | None = None
    cash: float | None = None
    quantity: float = 0.0
    pending_target: float | None = None
    current_target: float = 0.0
    equity: float | None = None
    day: str | None = None
    day_start_equity: float | None = None
    kill_switch: bool = False
    kill_switch_reason: str | None = None
    order_candles: list[str] = field(default_factory=list)
    unsettled_orders: list[str] = field(default_factory=list)
    records: int = 0


def _validate_record(record: object, *, path: Path, line_no: int, expected_seq: int) -> dict:
    where = f"journal {path} line {line_no}"
    if not isinstance(record, dict):
        raise JournalError(f"{where}: expected a JSON object")
    for key in ("seq", "at", "type", "sha"):
        if key not in record:
            raise JournalError(f"{where}: missing field {key!r}")
    if record["seq"] != expected_seq:
        raise JournalError(
            f"{where}: sequence {record['seq']!r}, expected {expected_seq} "
            "(lines missing, duplicated or reordered)"
        )
    if record["type"] not in RECORD_FIELDS:
        raise JournalError(f"{where}: unknown record type {record['type']!r}")
    missing = [f for f in RECORD_FIELDS[record["type"]] if f not in record]
    if missing:
        raise JournalError(f"{where}: {record['type']} record missing {', '.join(missing)}")
    if _checksum(record) != record["sha"]:
        raise JournalError(f"{where}: checksum mismatch (the line was altered)")
    return record


def _apply(state: JournalState, record: dict[str, Any]) -> None:
    kind = record["type"]
    if kind == "state":
        state.last_candle = record["last_candle"]
        state.cash = float(record["cash"])
        state.quantity = float(record["quantity"])
        state.pending_target = record["pending_target"]
        state.current_target = float(record.get("current_target", 0.0))
        state.equity = float(record["equity"])
        state.day = record.get("day")
        state.day_start_equity = record.get("day_start_equity")
    elif kind == "decision" and _later(record["candle"], state.last_candle):
        # A bar that changed nothing gets no state record (engine.live.runner): its decision
        # record says it was processed, and what it would do, so a restart does not decide
        # it again. Its target equals the current one, or a state record follows it.
        state.last_candle = record["candle"]
        state.pending_target = record["target"]
    elif kind == "kill_switch":
        state.kill_switch = bool(record["latched"])
        state.kill_switch_reason = record["reason"] if record["latched"] else None
    elif kind == "carried_over":
        state.order_candles = list(record["order_candles"])
    elif kind == "order":
        state.order_candles.append(record["candle"])
        state.unsettled_orders.append(record["order_id"])
    elif (
        kind in ("fill", "order_rejected", "order_unknown")
        and record["order_id"] in state.unsettled_orders
    ):
        state.unsettled_orders.remove(record["order_id"])


def _later(candle: str, than: str | None) -> bool:
    return than is None or datetime.fromisoformat(candle) > datetime.fromisoformat(than)


def read_journal(path: Path, *, running: bool = False) -> tuple[list[dict[str, Any]], JournalState]:
    """Every record, validated, and the state they add up to.

    `running=True` reads a copy taken while the engine runs (a registry collecting a
    forward run): a last line without its newline is a record being written, left for the
    next read instead of being an error. Anything else wrong is still an error.
    """
    state = JournalState()
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records, state
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                if running:
                    break  # being written: the next copy has it whole
                raise JournalError(
                    f"journal {path} line {line_no}: truncated last line (interrupted write); "
                    "inspect it and remove the partial line by hand"
                )
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JournalError(
                    f"journal {path} line {line_no}: invalid JSON ({exc.msg})"
                ) from exc
            record = _validate_record(
                raw, path=path, line_no=line_no, expected_seq=len(records) + 1
            )
            records.append(record)
            _apply(state, record)
    state.records = len(records)
    return records, state


class Journal:
    """Writer side: each append is one line, flushed and fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _, self.state = read_journal(path)
        self._seq = self.state.records
        path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not path.exists()
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        if is_new:
            # Make the new directory entry itself durable, not only the file's bytes.
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def append(self, kind: str, *, sync: bool = True, **payload: Any) -> dict[str, Any]:
        """Write one record; with sync=False it becomes durable with the next synced one."""
        if kind not in RECORD_FIELDS:
            raise ValueError(f"unknown journal record type {kind!r}")
        missing = [f for f in RECORD_FIELDS[kind] if f not in payload]
        if missing:
            raise ValueError(f"{kind} record missing {', '.join(missing)}")
        record: dict[str, Any] = {
            "seq": self._seq + 1,
            "at": datetime.now(UTC).isoformat(),
            "type": kind,
            **payload,
        }
        record["sha"] = _checksum(record)
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()
        if sync:
            os.fsync(self._handle.fileno())
        self._seq += 1
        _apply(self.state, record)
        self.state.records = self._seq
        return record

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def journal_path(journal_dir: Path, *, symbol: str, mode: str) -> Path:
    """One journal per symbol and mode: a paper run never inherits a live position."""
    return journal_dir / f"{symbol.lower()}-{mode}.jsonl"


def archive_other_model(path: Path, model_sha256: str | None) -> Path | None:
    """Set aside a paper journal whose last session ran another model; None if not.

    A paper position is simulated: a newly staged version must start from the initial
    cash, not trade on with the position and cash its predecessor built up (its forward
    run would judge the two together). The archive is renamed, never edited."""
    if not path.exists():
        return None
    records, _ = read_journal(path)
    sessions = [r for r in records if r.get("type") == "session_start"]
    if not sessions or sessions[-1].get("model_sha256") == model_sha256:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    archive = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    path.replace(archive)
    return archive


def rotate_if_large(path: Path, *, max_records: int = ROTATE_AFTER_RECORDS) -> Path | None:
    """Archive a long journal and start a new one that carries its state over.

    The archive is renamed, never edited (it stays the record of what happened); the new
    file opens with a `carried_over` record naming it and its sha256, then the last state
    and a latched kill switch. Returns the archive's path, or None when nothing was done.
    """
    records, state = read_journal(path)
    if len(records) < max_records:
        return None
    if state.unsettled_orders:
        # An order without an outcome needs a human (or the exchange) first; keep it in view.
        return None
    last_state = next((r for r in reversed(records) if r["type"] == "state"), None)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    path.replace(archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    journal = Journal(path)
    try:
        journal.append(
            "carried_over",
            archive=archive.name,
            archive_sha256=digest,
            archive_records=len(records),
            order_candles=state.order_candles[-100:],
        )
        if last_state is not None:
            carried = {k: v for k, v in last_state.items() if k not in ("seq", "at", "type", "sha")}
            journal.append("state", **carried)
        if state.kill_switch:
            journal.append("kill_switch", latched=True, reason=state.kill_switch_reason or "")
    finally:
        journal.close()
    return archive
