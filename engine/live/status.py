"""The status file (and optional loopback HTTP endpoint) that deployment's health check reads.

Fields follow docs/interfaces.md. The file is replaced atomically (tempfile in the same
directory, then os.replace) so a reader never sees half a document.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

STATUS_FIELDS = (
    "pid",
    "started_at",
    "mode",
    "state",
    "model_name",
    "model_version",
    "model_sha256",
    "last_candle",
    # Wall-clock time the engine last received a candle, and its candle interval: the
    # health check's proof that it has market data ('running' alone is not).
    "last_data_at",
    "interval_seconds",
    # Why the market-data feed's last poll failed (exchange unreachable, rate limited...);
    # None while it works. The engine keeps running and retrying meanwhile.
    "feed_error",
    # True when the engine serves the kept previous model (the guide's manual rollback).
    "serving_backup",
    # The costs traded at, their source and the policy they come from (config.EngineCosts).
    "costs",
    "position",
    "equity",
    "heartbeat_at",
    "kill_switch",
    "memory_rss_bytes",
    "cpu_percent",
)


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
        Path(tmp_name).replace(path)  # atomic rename (os.replace)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class StatusReporter:
    """Holds the current status document; `publish` writes it with a fresh heartbeat.

    The file is not fsynced: a reader must never see a torn document (the rename sees to
    that), but a heartbeat lost in a power cut is worthless anyway.
    """

    def __init__(self, path: Path | None, *, mode: str) -> None:
        self.path = path
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # first call primes the counter
        self._lock = threading.Lock()
        self._document: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "mode": mode,
            "state": "starting",
            "model_name": None,
            "model_version": None,
            "model_sha256": None,
            "last_candle": None,
            "last_data_at": None,
            "interval_seconds": None,
            "feed_error": None,
            "serving_backup": False,
            "costs": None,
            "position": 0.0,
            "equity": None,
            "heartbeat_at": None,
            "kill_switch": False,
            "memory_rss_bytes": None,
            "cpu_percent": None,
        }
        self._server: ThreadingHTTPServer | None = None

    def update(self, **fields: Any) -> None:
        unknown = set(fields) - set(STATUS_FIELDS) - {"detail"}
        if unknown:
            raise ValueError(f"unknown status field(s): {', '.join(sorted(unknown))}")
        with self._lock:
            self._document.update(fields)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            document = dict(self._document)
        document["heartbeat_at"] = datetime.now(UTC).isoformat()
        document["memory_rss_bytes"] = self._process.memory_info().rss
        document["cpu_percent"] = self._process.cpu_percent(None)
        return document

    def publish(self, **fields: Any) -> dict[str, Any]:
        if fields:
            self.update(**fields)
        document = self.snapshot()
        if self.path is not None:
            write_json_atomically(self.path, document)
        return document

    def serve(self, port: int) -> int:
        """Serve GET /status (and /) on 127.0.0.1 only; returns the bound port (0 = any)."""
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/", "/status"):
                    self.send_error(404)
                    return
                body = json.dumps(reporter.snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("status http: " + format, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
