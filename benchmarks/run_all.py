"""Every benchmark in one run, one table: figure | tradebot | peer or limit | ratio | target.

    make bench            # or: .venv/bin/python benchmarks/run_all.py --bench-python PY

Each benchmark runs as its own process with ``--json`` and keeps its human output (shown as
it runs); this collects their rows, prints the table and writes it to
test-artifacts/bench.json. The simulator's peers (vectorbt, backtrader) live only in the
benchmark venv that `make bench` builds; the other benchmarks train a model, so they run in
the project venv, which has TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
ARTIFACT = PROJECT / "test-artifacts" / "bench.json"


def benchmarks(bench_python: str, project_python: str) -> list[tuple[str, list[str]]]:
    return [
        ("live", [project_python, "benchmarks/bench_live.py"]),
        ("deploy", [project_python, "benchmarks/bench_deploy.py", "--runs", "3"]),
        ("backtest", [bench_python, "benchmarks/bench_backtest.py"]),
        ("run_backtest", [project_python, "benchmarks/bench_run_backtest.py"]),
        ("admin", [project_python, "benchmarks/bench_admin_pages.py"]),
        ("audit", [project_python, "benchmarks/bench_audit_verify.py", "--compare"]),
    ]


def run_one(name: str, command: list[str], folder: Path) -> tuple[list[dict[str, Any]], str]:
    output = folder / f"{name}.json"
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    result = subprocess.run([*command, "--json", str(output)], cwd=PROJECT, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0 or not output.exists():
        return [], f"{name}: FAILED (exit {result.returncode}) after {seconds:.0f} s"
    return json.loads(output.read_text()), f"{name}: {seconds:.0f} s"


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def table(rows: list[dict[str, Any]]) -> str:
    header = ("figure", "tradebot", "peer or limit (same run)", "ratio", "target")
    lines = []
    for row in rows:
        peer = "-"
        if row["peer"] is not None:
            peer = f"{_number(row['peer'], row['unit'])} ({row['peer_label']})"
        verdict = {True: " ok", False: " MISSED", None: ""}[row["met"]]
        lines.append(
            (
                row["figure"],
                _number(row["tradebot"], row["unit"]),
                peer,
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
                (row["target"] + verdict) if row["target"] else "-",
            )
        )
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(5)]
    rule = "-+-".join("-" * width for width in widths)
    render = [" | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
              for cells in [header, *lines]]  # fmt: skip
    return "\n".join([render[0], rule, *render[1:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-python", default=sys.executable, help="venv with vectorbt")
    parser.add_argument("--project-python", default=sys.executable, help="venv with TensorFlow")
    parser.add_argument(
        "--only",
        nargs="*",
        help="run only these (backtest, run_backtest, live, deploy, admin, audit)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    timings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for name, command in benchmarks(args.bench_python, args.project_python):
            if args.only and name not in args.only:
                continue
            found, timing = run_one(name, command, Path(scratch))
            rows.extend(found)
            timings.append(timing)
    total = time.monotonic() - started
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{table(rows)}\n")
    print(f"runs: {'; '.join(timings)}; total {total:.0f} s; "
          f"load average {load} on {os.cpu_count()} cores")  # fmt: skip
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(
        json.dumps({"rows": rows, "runs": timings, "total_seconds": total, "load": load}, indent=2)
    )
    print(f"written: {ARTIFACT.relative_to(PROJECT)}")
    return 0 if all("FAILED" not in timing for timing in timings) else 1


if __name__ == "__main__":
    sys.exit(main())
