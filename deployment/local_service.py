"""A stand-in for systemd on a machine without it: the demo's local targets and development.

    python -m deployment.local_service restart --root DIR -- COMMAND [ARGS...]
    python -m deployment.local_service stop --root DIR

`restart` stops the process recorded in DIR/var/engine.pid (SIGTERM, then
SIGKILL after a grace period, as systemd does), then starts COMMAND detached
in its own session with its output appended to DIR/var/engine.log, and records
its pid. A production host uses the systemd unit in deployment/systemd/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15.0


def pid_file(root: Path) -> Path:
    return root / "var" / "engine.pid"


def log_file(root: Path) -> Path:
    return root / "var" / "engine.log"


def running_pid(root: Path) -> int | None:
    try:
        pid = int(pid_file(root).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop(root: Path, grace: float = STOP_GRACE_SECONDS) -> bool:
    """Stop the recorded process; True if one was running."""
    pid = running_pid(root)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def start(root: Path, command: list[str]) -> int:
    (root / "var").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": _python_path()}
    with log_file(root).open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(root).write_text(f"{process.pid}\n")
    return process.pid


def _python_path() -> str:
    existing = os.environ.get("PYTHONPATH", "")
    return f"{PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(PROJECT_ROOT)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployment.local_service", description=__doc__)
    parser.add_argument("action", choices=["restart", "stop", "status"])
    parser.add_argument("--root", required=True, type=Path, help="the install root")
    parser.epilog = "restart: -- COMMAND [ARGS...] follows the options"
    # Split at "--" by hand: argparse's REMAINDER would also swallow --root.
    own, command = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = parser.parse_args(own)
    if args.action == "status":
        pid = running_pid(args.root)
        print(f"running pid={pid}" if pid else "stopped")
        return 0 if pid else 3
    stop(args.root)
    if args.action == "stop":
        return 0
    if not command:
        parser.error("restart needs the command to start after --")
    print(f"started pid={start(args.root, command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
