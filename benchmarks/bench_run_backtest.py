"""`manage.py run_backtest ml_basic` end to end, on a demo state built in a temp folder.

    .venv/bin/python benchmarks/bench_run_backtest.py [--runs 3] [--state DIR] [--json PATH]

Builds its own state first: `manage.py run_demo --no-serve` (the embedded SQLite, the
shipped data, btcusdt_sentiment v1 and v2 trained) with every path it writes (database,
store, artifacts, broker) pointing into a temp folder, never the user's; `--state DIR`
reuses a folder built that way. Then, each the median of --runs runs, from outside, as an
operator types it:
- `run_backtest ml_basic --model btcusdt_sentiment --model-version 2 --no-db` on the
  policy's 90-day window (target <= 3 s on a quiet machine), beside the same command's
  `--help` (the interpreter, Django and the command's imports, no work): its floor;
- the share of that run spent on the random long/flat baselines (every path simulated
  together; target <= 20%), timed inside a run of the same command through a wrapper
  around engine.backtest.runner.random_long_flat_baseline, over that run's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchmarks import _figures  # noqa: E402

TARGET_SECONDS = 3.0
TARGET_BASELINE_SHARE = 0.20
MODEL = ["--model", "btcusdt_sentiment", "--model-version", "2"]
WINDOW_DAYS = 90

# Runs the command as manage.py does, with the baselines timed; writes the seconds spent in
# them to the file named by the one argument before the command's own.
_TIMED_BASELINES = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
import django
django.setup()
import engine.backtest.runner as runner
spent = [0.0]
untimed = runner.random_long_flat_baseline
def timed(*args, **kwargs):
    started = time.perf_counter()
    try:
        return untimed(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - started
runner.random_long_flat_baseline = timed
out = sys.argv.pop(1)
from django.core.management import execute_from_command_line
try:
    execute_from_command_line(sys.argv)
finally:
    with open(out, "w") as handle:
        handle.write(repr(spent[0]))
"""


def state_env(folder: Path) -> dict[str, str]:
    """The environment of every command: each path the app writes inside `folder`, set
    explicitly so that neither the caller's environment nor a .env file can name others."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUDIT_")}
    env.update(
        TRADEBOT_VAR_DIR=str(folder),
        DATABASE_URL=f"sqlite:///{folder / 'tradebot.sqlite3'}",
        TRADEBOT_DATA_DIR=str(folder / "data"),
        MEDIA_ROOT=str(folder / "artifacts"),
        STATIC_ROOT=str(folder / "static"),
        CELERY_BROKER_URL="filesystem://",
        ENVIRONMENT="development",
    )
    return env


def manage(env: dict[str, str], *args: str) -> float:
    """Wall seconds of one `manage.py` command (its output discarded; a failure stops)."""
    command = [sys.executable, "manage.py", *args]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-2000:]
        raise SystemExit(f"{' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return seconds


def build_state(folder: Path, env: dict[str, str]) -> None:
    if (folder / "demo-walked.json").exists():
        print(f"state: reusing {folder}", flush=True)
        return
    seconds = manage(env, "run_demo", "--no-serve")
    print(f"state: run_demo --no-serve in {folder}: {seconds:.1f} s", flush=True)


def check_window(env: dict[str, str], out: Path) -> int:
    """The run's window is the policy's 90 days; returns its bars."""
    result = subprocess.run(
        [sys.executable, "manage.py", "run_backtest", "ml_basic", *MODEL, "--no-db",
         "--output-dir", str(out), "--json"],
        cwd=PROJECT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    bars = int(summary["n_bars"])
    if bars != WINDOW_DAYS * 24:
        raise SystemExit(f"expected the policy's {WINDOW_DAYS}-day window, got {bars} bars")
    print(f"window: {summary['window_start']} to {summary['window_end']}, {bars} bars")
    return bars


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state", type=Path, help="reuse (or build) the demo state here")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-backtest-") as temp:
        folder = (args.state or Path(temp) / "state").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        env = state_env(folder)
        build_state(folder, env)
        out = Path(temp) / "out"
        check_window(env, out)
        command = ("run_backtest", "ml_basic", *MODEL, "--no-db", "--output-dir", str(out))
        floor, runs, timed_runs, baselines = [], [], [], []
        spent_file = Path(temp) / "baselines-seconds"
        for _ in range(args.runs):  # interleaved: each figure sees the same load
            floor.append(manage(env, "run_backtest", "--help"))
            runs.append(manage(env, *command))
            timed_runs.append(_timed_run(env, spent_file, command))
            baselines.append(float(spent_file.read_text()))
    wall, start_up = statistics.median(runs), statistics.median(floor)
    timed_wall, baseline_seconds = statistics.median(timed_runs), statistics.median(baselines)
    share = baseline_seconds / timed_wall
    load = os.getloadavg()[0]
    print(
        f"run_backtest ml_basic, {WINDOW_DAYS}-day window, --no-db: median {wall:.2f} s "
        f"(min {min(runs):.2f}, max {max(runs):.2f}); `run_backtest --help` (start-up alone) "
        f"{start_up:.2f} s; target <= {TARGET_SECONDS:g} s quiet: "
        f"{'met' if wall <= TARGET_SECONDS else 'MISSED'}; load average {load:.1f} on "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    print(
        f"random long/flat baselines: {baseline_seconds * 1000:.0f} ms of a {timed_wall:.2f} s "
        f"run = {share:.1%}; target <= {TARGET_BASELINE_SHARE:.0%}: "
        f"{'met' if share <= TARGET_BASELINE_SHARE else 'MISSED'}",
        flush=True,
    )
    _figures.record(
        f"run_backtest ml_basic, {WINDOW_DAYS}-day window, end to end, median (s)", wall, "s",
        peer=start_up, peer_label="run_backtest --help: start-up alone",
        target=("tradebot", "<=", TARGET_SECONDS),
    )  # fmt: skip
    _figures.record(
        f"run_backtest: random long/flat baselines ({baseline_seconds * 1000:.0f} ms of a "
        f"{timed_wall:.2f} s run), share (%)", share * 100, "%",
        target=("tradebot", "<=", TARGET_BASELINE_SHARE * 100),
    )  # fmt: skip
    _figures.write(args.json)
    return 0


def _timed_run(env: dict[str, str], spent_file: Path, command: tuple[str, ...]) -> float:
    """Wall seconds of the command run through _TIMED_BASELINES (which writes, to
    `spent_file`, the seconds spent in the baselines)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _TIMED_BASELINES, str(spent_file), *command],
        cwd=PROJECT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"timed run failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
