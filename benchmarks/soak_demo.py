"""Soak the embedded default: the demo's web server, worker and beat for N minutes.

    .venv/bin/python benchmarks/soak_demo.py [--minutes 30] [--send-every 2]

Runs on a fresh state folder (SQLite, the embedded filesystem broker), with the demo's
schedules plus a probe that beat fires every minute, while this script also publishes a
probe task every few seconds (a second producer, as the web app is) and loads the admin
login page. At the end it drains the queue and prints:

    crashes            processes that exited, plus "Unrecoverable error" lines in the logs
    messages lost      probes published (by beat or by this script) that never ran
    tasks run twice    task ids the worker finished more than once

All three must be 0. Not a test: it takes as long as you tell it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_TASK = "tradebot.ping"
SUCCEEDED = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] succeeded")
BEAT_SENT = re.compile(r"Sending due task soak probe")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--send-every", type=float, default=2.0, help="seconds between probes")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="tradebot-soak-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(TRADEBOT_VAR_DIR=str(var), ENVIRONMENT="development", PYTHONUNBUFFERED="1")
    os.environ.clear()
    os.environ.update(env)
    python = sys.executable
    manage = [python, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "setup_periodic_tasks"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    import django

    django.setup()
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    from tradebot.celery import app

    every_minute, _ = CrontabSchedule.objects.get_or_create(minute="*", hour="*", timezone="UTC")
    PeriodicTask.objects.update_or_create(
        name="soak probe",
        defaults={"task": PROBE_TASK, "crontab": every_minute, "args": '["beat"]'},
    )

    port = free_port()
    commands = {
        "web": [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [python, "-m", "celery", "-A", "tradebot", "worker", "--pool=solo",
                   "--queues=default,training,backtest,deploy", "--loglevel=INFO",
                   "--hostname=soak@%h"],
        "beat": [python, "-m", "celery", "-A", "tradebot", "beat", "--loglevel=INFO",
                 f"--pidfile={var / 'beat.pid'}"],
    }  # fmt: skip
    logs = {name: var / f"{name}.log" for name in commands}
    processes = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logs[name].open("w"),
                               stderr=subprocess.STDOUT)
        for name, cmd in commands.items()
    }  # fmt: skip
    _wait_for_web(port)
    print(f"soaking for {args.minutes:g} min; state and logs in {var}", flush=True)

    sent: list[str] = []
    web_failures = 0
    deadline = time.monotonic() + args.minutes * 60
    next_report = time.monotonic() + 60
    exited: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            task_id = str(uuid.uuid4())
            app.send_task(PROBE_TASK, args=["script"], task_id=task_id)
            sent.append(task_id)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=10):
                    pass
            except OSError:
                web_failures += 1
            for name, process in processes.items():
                if process.poll() is not None and name not in exited:
                    exited[name] = process.returncode
                    print(f"  {name} EXITED with code {process.returncode}", flush=True)
            if time.monotonic() > next_report:
                left = (deadline - time.monotonic()) / 60
                print(f"  {len(sent)} probes sent, {left:.1f} min left", flush=True)
                next_report += 60
            time.sleep(args.send_every)
        drain_until = time.monotonic() + 120
        while time.monotonic() < drain_until and _pending(var):
            time.sleep(1)
        time.sleep(3)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    worker_log = logs["worker"].read_text(errors="replace")
    all_logs = "".join(path.read_text(errors="replace") for path in logs.values())
    finished = collections.Counter(m.group(2) for m in SUCCEEDED.finditer(worker_log))
    probe_ids = [m.group(2) for m in SUCCEEDED.finditer(worker_log) if m.group(1) == PROBE_TASK]
    beat_sent = len(BEAT_SENT.findall(logs["beat"].read_text(errors="replace")))
    script_run = sum(1 for task_id in sent if finished[task_id])
    beat_run = len(set(probe_ids) - set(sent))
    crashes = len(exited) + all_logs.count("Unrecoverable error")
    lost = (len(sent) - script_run) + max(0, beat_sent - beat_run)
    twice = sum(1 for count in finished.values() if count > 1)
    broker_warnings = all_logs.count("broker: cannot read message")
    print(f"minutes: {args.minutes:g}")
    print(f"probes sent by the script: {len(sent)}, run: {script_run}")
    print(f"probes fired by beat: {beat_sent}, run: {beat_run}")
    print(f"tasks finished by the worker (all kinds): {sum(finished.values())}")
    print(f"admin login page failures: {web_failures}")
    print(f"broker read retries logged: {broker_warnings}")
    print(f"crashes: {crashes}")
    print(f"messages lost: {lost}")
    print(f"tasks run twice: {twice}")
    return 0 if crashes == lost == twice == web_failures == 0 else 1


def _wait_for_web(port: int) -> None:
    """Start counting web failures once the server is up, not during its start-up."""
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the web server did not come up in 60 s")


def _pending(var: Path) -> bool:
    queue = var / "celery-broker" / "queue"
    return queue.is_dir() and any(queue.iterdir())


if __name__ == "__main__":
    sys.exit(main())
