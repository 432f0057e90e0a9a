"""Stale training folders are swept (#26, finding 5): at worker start and on a schedule,
only those older than the training hard limit and held by no live process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from models_registry.services.temp_sweep import (
    OWNER_FILE,
    owner_mark,
    stale_after_seconds,
    sweep_stale_temp_folders,
)
from tradebot.queues import QUEUE_LIMITS, TRAINING

HOUR = 3600.0


def aged(folder: Path, seconds: float) -> Path:
    """Make every entry of `folder` look `seconds` old."""
    when = time.time() - seconds
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.utime(Path(current) / name, (when, when), follow_symlinks=False)
    os.utime(folder, (when, when))
    return folder


def training_folder(root: Path, name: str, *, owner: str | None) -> Path:
    folder = root / f"tradebot-training-{name}"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "checkpoint.h5").write_bytes(b"weights")
    if owner == "me":
        owner_mark(folder)
    elif owner == "dead":
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        started = psutil.Process(process.pid).create_time()
        process.wait()
        (folder / OWNER_FILE).write_text(f"{process.pid} {started!r}\n")
    elif owner == "reused pid":
        # This process's pid, but another start time: the owner died and the pid came back.
        (folder / OWNER_FILE).write_text(f"{os.getpid()} 12345.0\n")
    return folder


def test_the_age_threshold_is_the_training_hard_limit() -> None:
    assert stale_after_seconds() == QUEUE_LIMITS[TRAINING].hard_seconds


@pytest.mark.parametrize(
    ("owner", "age_hours", "swept"),
    [
        ("dead", 2.0, True),
        (None, 2.0, True),
        ("reused pid", 2.0, True),
        ("me", 2.0, False),  # held by a live process, however old
        ("dead", 0.5, False),  # younger than the hard limit
        (None, 0.5, False),
    ],
)
def test_only_old_unheld_folders_go(
    owner: str | None, age_hours: float, swept: bool, tmp_path: Path
) -> None:
    folder = aged(training_folder(tmp_path, "x", owner=owner), age_hours * HOUR)
    (tmp_path / "keep-me").mkdir()
    aged(tmp_path / "keep-me", 5 * HOUR)

    removed = sweep_stale_temp_folders(root=tmp_path)

    assert (folder in removed) is swept
    assert folder.exists() is not swept
    assert (tmp_path / "keep-me").exists()  # not ours: never touched


def test_a_recently_touched_file_deep_inside_keeps_the_folder(tmp_path: Path) -> None:
    folder = aged(training_folder(tmp_path, "busy", owner=None), 3 * HOUR)
    (folder / "model" / "checkpoint.h5").touch()
    assert sweep_stale_temp_folders(root=tmp_path) == []


def test_a_link_under_a_swept_name_is_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep")
    link = tmp_path / "tradebot-training-link"
    link.symlink_to(precious, target_is_directory=True)
    os.utime(link, (0, 0), follow_symlinks=False)
    assert sweep_stale_temp_folders(root=tmp_path, max_age=0) == []
    assert (precious / "data").read_text() == "keep"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_starting_worker_sweeps_what_a_killed_one_left(
    tmp_path: Path, celery_worker_factory: Any
) -> None:
    temp = tmp_path / "worker-tmp"
    temp.mkdir()
    stale = aged(training_folder(temp, "killed", owner="dead"), 2 * HOUR)
    fresh = training_folder(temp, "running", owner="dead")
    worker = celery_worker_factory(queues="training", env={"TMPDIR": str(temp)})
    deadline = time.monotonic() + 20
    while stale.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not stale.exists(), worker.log_path.read_text()[-2000:]
    assert fresh.exists()
