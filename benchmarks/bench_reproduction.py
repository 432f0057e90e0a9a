"""How alike are two models of one training procedure? (#28, the reproduction check)

    nice -n 10 .venv/bin/python benchmarks/bench_reproduction.py [--data-dir ../shared/data]
        [--epochs 20]

Trains the default TrainingConfig (price only) on real BTCUSDT candles, 2022-06-01 to
2024-06-01, then re-fits it: the same procedure again; the same procedure in a fresh process
with TensorFlow's intra-op threads at 1, 8 and 16 (arithmetic alone differs, as on another
machine); and other procedures: five more epochs, seed 43, 90 more days of data. Prints, for
each, how alike it is to the reference on 290 later days (2024-09-01 to 2025-06-18): the
share of bars on which ml_basic takes the same position, the largest prediction difference
and the correlation of predictions, and what the reproduction check
(engine.backtest.reproduction) would call it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from engine.backtest.reproduction import prediction_correlation, reproduction_status  # noqa: E402
from engine.inference.predictor import OnnxPredictor  # noqa: E402
from engine.strategies import get_strategy  # noqa: E402
from engine.training import train_model  # noqa: E402
from engine.training.config import TrainingConfig  # noqa: E402

DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
TRAIN = (pd.Timestamp("2022-06-01", tz="UTC"), pd.Timestamp("2024-06-01", tz="UTC"))
PROBE = (pd.Timestamp("2024-09-01", tz="UTC"), pd.Timestamp("2025-06-18", tz="UTC"))


def hourly_candles(data_dir: Path) -> pd.DataFrame:
    raw = pd.read_csv(data_dir / "BTCUSDT-1h.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], utc=True), name="open_time")
    columns = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(raw[columns].to_numpy(dtype="float64"), index=index, columns=columns)
    return frame.asfreq("1h").ffill()  # the shared file's missing hour, as the store fills it


Fitted = tuple[pd.Series, pd.Series, float]  # positions, predictions, seconds to train


def fit(candles: pd.DataFrame, config: TrainingConfig, stop: pd.Timestamp, folder: Path) -> Fitted:
    began = time.monotonic()
    result = train_model(candles.loc[TRAIN[0] : stop], None, config, folder / "model")
    took = time.monotonic() - began
    predictor = OnnxPredictor.from_dir(result.output_dir)
    history = candles.loc[: PROBE[1]]
    bars = candles.loc[PROBE[0] : PROBE[1]].index
    positions = get_strategy("ml_basic", predictor=predictor).targets(history, None).loc[bars]
    return positions, predictor.predict(history, None).loc[bars], took


def in_fresh_process(threads: int, data_dir: Path, epochs: int, folder: Path) -> Fitted:
    """The reference procedure trained by a child process with this many intra-op threads
    (TensorFlow reads the setting once, at start-up)."""
    out = folder / f"threads-{threads}"
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads)}
    command = [sys.executable, __file__, "--data-dir", str(data_dir), "--epochs", str(epochs),
               "--child", str(out)]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True)
    loaded = np.load(f"{out}.npz")
    bars = pd.DatetimeIndex(loaded["bars"], tz="UTC")
    return (
        pd.Series(loaded["positions"], index=bars),
        pd.Series(loaded["predictions"], index=bars),
        float(loaded["took"]),
    )


def child(args: argparse.Namespace) -> None:
    candles = hourly_candles(args.data_dir)
    base = TrainingConfig(force_price_only=True, epochs=args.epochs)
    positions, predictions, took = fit(candles, base, TRAIN[1], Path(f"{args.child}-work"))
    np.savez(
        args.child,
        bars=positions.index.tz_convert(None).to_numpy(),
        positions=positions.to_numpy(),
        predictions=predictions.to_numpy(),
        took=took,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    candles = hourly_candles(args.data_dir)
    base = TrainingConfig(force_price_only=True, epochs=args.epochs)
    root = Path(tempfile.mkdtemp(prefix="bench_reproduction_"))
    reference = fit(candles, base, TRAIN[1], root / "reference")
    print(f"reference trained in {reference[2]:.0f} s")
    print(f"{'re-fit':32s} {'same position':>13s} {'max |dp|':>9s} {'corr':>8s} "
          f"{'train s':>7s}  check says")  # fmt: skip
    rows: list[tuple[str, Fitted]] = [
        ("the same procedure again", fit(candles, base, TRAIN[1], root / "again"))
    ]
    for threads in (1, 8, 16):
        fitted = in_fresh_process(threads, args.data_dir, args.epochs, root)
        rows.append((f"same, {threads} intra-op thread(s)", fitted))
    for name, config, stop in (
        ("5 more epochs", replace(base, epochs=base.epochs + 5), TRAIN[1]),
        ("seed 43 instead of 42", replace(base, seed=43), TRAIN[1]),
        ("90 more days of data", base, TRAIN[1] + pd.Timedelta(days=90)),
    ):
        rows.append((name, fit(candles, config, stop, root / name.replace(" ", "-"))))
    for name, (positions, predictions, took) in rows:
        same = float((positions.to_numpy() == reference[0].to_numpy()).mean())
        gap = float(np.nanmax(np.abs(predictions.to_numpy() - reference[1].to_numpy())))
        corr = prediction_correlation(predictions.to_numpy(), reference[1].to_numpy())
        print(f"{name:32s} {same:>13.1%} {gap:>9.2g} {corr:>8.5f} {took:>7.0f}  "
              f"{reproduction_status(gap, same, corr)}")  # fmt: skip
    print("floor: the same procedure again, in this process, is 100.0% and 0 ('reproduces')")


if __name__ == "__main__":
    main()
