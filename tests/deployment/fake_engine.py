"""Stand-in for `python -m engine.live` honouring the contract in docs/interfaces.md.

Used by the deployment tests when the real engine cannot run here. It reads the
model folder, checks the ONNX file's sha256 against the metadata's `onnx_sha256`
and the `<name>.onnx.sha256` file, and then either refuses (non-zero exit, status
state "failed") or logs exactly one `model loaded: <name> version=<v> sha256=<sha>`
line and keeps a status file with a heartbeat until SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake_engine")
    parser.add_argument("strategy")
    parser.add_argument("--paper-trading", action="store_true")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--model")
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def model_name(model_dir: Path, requested: str | None) -> str:
    if requested:
        return requested
    names = sorted(path.stem for path in model_dir.glob("*.onnx"))
    if len(names) != 1:
        raise SystemExit(f"expected exactly one .onnx file in {model_dir}, found {names}")
    return names[0]


def run_checks(model_dir: Path, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    onnx = model_dir / f"{name}.onnx"
    metadata_path = model_dir / f"{name}_metadata.json"
    expected_path = model_dir / f"{name}.onnx.sha256"
    if not onnx.is_file() or not metadata_path.is_file():
        checks.append({"name": "files", "ok": False, "detail": f"missing files for {name}"})
        return checks, {}
    actual = hashlib.sha256(onnx.read_bytes()).hexdigest()
    try:
        metadata = json.loads(metadata_path.read_text())
    except json.JSONDecodeError as error:
        checks.append({"name": "metadata", "ok": False, "detail": str(error)})
        return checks, {}
    checks.append(
        {
            "name": "metadata_sha256",
            "ok": metadata.get("onnx_sha256") == actual,
            "detail": f"metadata says {metadata.get('onnx_sha256')}, file is {actual}",
        }
    )
    if expected_path.is_file():
        expected = expected_path.read_text().split()[0]
        checks.append(
            {
                "name": "expected_sha256",
                "ok": expected == actual,
                "detail": f"{expected_path.name} says {expected}, file is {actual}",
            }
        )
    return checks, {**metadata, "actual_sha256": actual}


def shipped_costs(model_dir: Path, name: str) -> dict[str, Any] | None:
    """The costs the real engine would report: the shipped policy costs file's."""
    path = model_dir / f"{name}_costs.json"
    if not path.is_file():
        return None
    shipped = json.loads(path.read_text())
    return {
        "fee_bps": shipped["fee_bps"],
        "slippage_bps": shipped["slippage_bps"],
        "source": "policy",
        "policy_hash": shipped["policy_hash"],
    }


def write_status(path: Path | None, document: dict[str, Any]) -> None:
    if path is None:
        return
    document = {**document, "heartbeat_at": datetime.now(UTC).isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    name = model_name(args.model_dir, args.model)
    checks, metadata = run_checks(args.model_dir, name)
    failed = [check for check in checks if not check["ok"]]
    if args.check_only:
        report = {"model_dir": str(args.model_dir), "ok": not failed, "checks": checks}
        print(json.dumps(report) if args.json else "\n".join(map(str, checks)))
        return 1 if failed else 0
    status: dict[str, Any] = {
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(),
        "mode": "paper",
        "state": "starting",
        "model_name": None,
        "model_version": None,
        "model_sha256": None,
    }
    write_status(args.status_file, status)
    if failed:
        detail = "; ".join(f"{check['name']}: {check['detail']}" for check in failed)
        print(f"start-up check failed: {detail}", flush=True)
        write_status(args.status_file, {**status, "state": "failed", "detail": detail})
        return 1
    sha = metadata["actual_sha256"]
    status.update(
        state="running",
        model_name=name,
        model_version=metadata.get("version"),
        model_sha256=sha,
        costs=shipped_costs(args.model_dir, name),
    )
    print(f"model loaded: {name} version={metadata.get('version')} sha256={sha}", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            write_status(args.status_file, status)
            time.sleep(HEARTBEAT_SECONDS)
    finally:
        write_status(args.status_file, {**status, "state": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
