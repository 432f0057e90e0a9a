"""Sweeping the temporary folders a killed training (or upload) left behind.

Training works in ``<tmp>/tradebot-training-*`` and removes it when done; a worker killed
mid-training (OOM, SIGKILL, a hard time limit that takes the process) leaves it, with
checkpoints and copies of market data. Workers sweep them at start (Celery's
``worker_ready``) and on a beat schedule. A folder goes only when it is older than the
training hard time limit and no live process holds it: each folder names its owner
(pid and process start time, so a reused pid is not mistaken for the owner).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import psutil

from tradebot.queues import QUEUE_LIMITS, TRAINING

logger = logging.getLogger(__name__)

OWNER_FILE = ".tradebot-owner"
SWEPT_PREFIXES = ("tradebot-training-", "tradebot-register-")


def owner_mark(folder: Path) -> None:
    """Record this process as the folder's owner (written once, at creation)."""
    me = psutil.Process()
    (folder / OWNER_FILE).write_text(f"{me.pid} {me.create_time()!r}\n")


def stale_after_seconds() -> float:
    """A folder younger than the training hard limit may belong to a running training."""
    return float(QUEUE_LIMITS[TRAINING].hard_seconds)


def held_by_live_process(folder: Path) -> bool:
    try:
        pid_text, started_text = (folder / OWNER_FILE).read_text().split()
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return False  # no owner recorded (or unreadable): age alone decides
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def newest_change(folder: Path) -> float:
    """The latest modification time in the folder's tree (a working training touches it)."""
    newest = folder.lstat().st_mtime
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, (Path(current) / name).lstat().st_mtime)
            except OSError:
                continue
    return newest


def sweep_stale_temp_folders(
    *, root: Path | None = None, now: float | None = None, max_age: float | None = None
) -> list[Path]:
    """Remove this machine's stale training and upload folders; returns what went."""
    root = Path(root or tempfile.gettempdir())
    now = time.time() if now is None else now
    max_age = stale_after_seconds() if max_age is None else max_age
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(SWEPT_PREFIXES):
            continue
        try:
            if not stat.S_ISDIR(entry.lstat().st_mode):
                continue  # never follow a link planted under a swept name
            if now - newest_change(entry) < max_age or held_by_live_process(entry):
                continue
            shutil.rmtree(entry)
        except OSError as exc:
            logger.warning("could not sweep %s: %s", entry, exc)
            continue
        logger.info("swept stale temporary folder %s", entry)
        removed.append(entry)
    return removed
