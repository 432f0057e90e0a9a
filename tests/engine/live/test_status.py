"""The status document deployment's health check reads (file and loopback HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import requests

from engine.live.status import STATUS_FIELDS, StatusReporter


def test_status_file_has_every_documented_field(tmp_path: Path) -> None:
    path = tmp_path / "var" / "status.json"
    reporter = StatusReporter(path, mode="paper")
    reporter.publish(state="running", model_name="m", model_version=3, equity=1.5)
    document = json.loads(path.read_text())
    assert set(STATUS_FIELDS) <= set(document)
    assert document["pid"] == os.getpid()
    assert (document["mode"], document["state"], document["model_version"]) == (
        "paper",
        "running",
        3,
    )
    assert document["memory_rss_bytes"] > 0
    # Atomic replacement leaves no temporary files behind.
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_status_served_on_loopback(tmp_path: Path) -> None:
    reporter = StatusReporter(None, mode="live")
    port = reporter.serve(0)
    try:
        reporter.update(state="halted", kill_switch=True)
        answer = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
        missing = requests.get(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        reporter.close()
    assert (answer["state"], answer["kill_switch"], answer["mode"]) == ("halted", True, "live")
    assert missing.status_code == 404
