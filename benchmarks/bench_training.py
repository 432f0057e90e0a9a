"""Default training on three years of BTCUSDT 1h: time, memory, accuracy, parity.

Runs each kind (price-only, sentiment) in its own process so that peak memory
is that run's alone, then prints the figures side by side. Heavy: run it alone.

    .venv/bin/python benchmarks/bench_training.py [--data-dir ../shared/data] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
TARGET_SECONDS = 300
KINDS = ("price", "sentiment")


def run_one(kind: str, data_dir: Path, epochs: int | None) -> dict[str, object]:
    """One default training run in this process; returns its figures."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from engine.data import (
        ValidationPolicy,
        apply_candle_policy,
        read_kline_csv,
        read_sentiment_csv,
    )
    from engine.training import TrainingConfig, train_model

    started = time.monotonic()
    raw = read_kline_csv(data_dir / "BTCUSDT-1h.csv", "1h")
    # The shared file has one missing hour; fill it as the data store would.
    candles, report = apply_candle_policy(
        raw, "1h", ValidationPolicy(gaps="fill", max_fill=3), source="BTCUSDT-1h.csv"
    )
    sentiment = read_sentiment_csv(data_dir / "fear_greed_index.csv")
    config = TrainingConfig(force_price_only=kind == "price")
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)  # re-validated by __post_init__
    epoch_times: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        result = train_model(
            candles,
            sentiment,
            config,
            Path(folder) / "model",
            on_epoch=lambda epoch, total, logs: epoch_times.append(time.monotonic()),
        )
    wall = time.monotonic() - started
    metadata = result.metadata
    return {
        "kind": metadata["kind"],
        "rows": len(candles),
        "filled_rows": report.filled_rows,
        "wall_seconds": round(wall, 1),
        "train_seconds": metadata["duration_seconds"],
        "epochs_run": metadata["training"]["epochs_run"],
        "best_epoch": metadata["training"]["best_epoch"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "test_directional_accuracy": metadata["metrics"]["test"]["directional_accuracy"],
        "test_up_share": metadata["metrics"]["test"]["up_share"],
        "test_samples": metadata["metrics"]["test"]["samples"],
        "parity_max_abs_diff": metadata["parity"]["max_abs_diff"],
        "sentiment_reason": metadata["sentiment_reason"],
        "warnings": result.warnings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--only", choices=KINDS, help="run one kind in this process (internal)")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.data_dir, args.epochs)))
        return
    figures = []
    for kind in KINDS:
        command = [sys.executable, __file__, "--only", kind, "--data-dir", str(args.data_dir)]
        if args.epochs is not None:
            command += ["--epochs", str(args.epochs)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{kind} run failed:\n{done.stderr[-4000:]}")
        figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print_table(figures)


def print_table(figures: list[dict[str, Any]]) -> None:
    # The figures come back as JSON from one process per kind: values of any JSON type.
    rows = [
        ("wall time (s)", "wall_seconds"),
        ("train_model duration (s)", "train_seconds"),
        ("epochs run (best)", None),
        ("peak RSS (MB)", "peak_rss_mb"),
        ("test directional accuracy", "test_directional_accuracy"),
        ("test share of up bars", "test_up_share"),
        ("test samples", "test_samples"),
        ("ONNX vs Keras max |diff|", "parity_max_abs_diff"),
    ]
    print(f"{'BTCUSDT 1h, default config':<28}" + "".join(f"{f['kind']:>16}" for f in figures))
    for label, key in rows:
        if key is None:
            cells = [f"{f['epochs_run']} ({f['best_epoch']})" for f in figures]
        else:
            cells = [_fmt(f[key]) for f in figures]
        print(f"{label:<28}" + "".join(f"{c:>16}" for c in cells))
    for f in figures:
        verdict = "within" if float(f["wall_seconds"]) < TARGET_SECONDS else "OVER"
        print(f"{f['kind']}: {verdict} the {TARGET_SECONDS} s target; {f['sentiment_reason']}")
        for warning in f["warnings"]:
            print(f"  warning: {warning}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


if __name__ == "__main__":
    main()
