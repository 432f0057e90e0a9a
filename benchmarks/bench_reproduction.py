"""How alike are two models of one training procedure? (#28, the reproduction check)

    nice -n 10 .venv/bin/python benchmarks/bench_reproduction.py [--data-dir ../shared/data]
        [--epochs 20]

Trains the default TrainingConfig (price only) on real BTCUSDT candles, 2022-06-01 to
2024-06-01, then re-fits it four ways: the same procedure again, five more epochs, seed 43,
90 more days of data. Prints, for each, how alike it is to the reference on 290 later days
(2024-09-01 to 2025-06-18): the share of bars on which ml_basic takes the same position, the
largest prediction difference and the correlation of predictions. The reproduction check
(engine.backtest.reproduction) reads the first row as its floor: an honest re-fit here is
identical; the others show how far a file trained otherwise lies from its procedure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

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


def fit(
    candles: pd.DataFrame, config: TrainingConfig, stop: pd.Timestamp, folder: Path
) -> tuple[pd.Series, pd.Series, float]:
    began = time.monotonic()
    result = train_model(candles.loc[TRAIN[0] : stop], None, config, folder / "model")
    took = time.monotonic() - began
    predictor = OnnxPredictor.from_dir(result.output_dir)
    history = candles.loc[: PROBE[1]]
    bars = candles.loc[PROBE[0] : PROBE[1]].index
    positions = get_strategy("ml_basic", predictor=predictor).targets(history, None).loc[bars]
    return positions, predictor.predict(history, None).loc[bars], took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    args = parser.parse_args()
    candles = hourly_candles(args.data_dir)
    base = TrainingConfig(force_price_only=True, epochs=args.epochs)
    root = Path(tempfile.mkdtemp(prefix="bench_reproduction_"))
    reference = fit(candles, base, TRAIN[1], root / "reference")
    variants = {
        "the same procedure again": (base, TRAIN[1]),
        "5 more epochs": (replace(base, epochs=base.epochs + 5), TRAIN[1]),
        "seed 43 instead of 42": (replace(base, seed=43), TRAIN[1]),
        "90 more days of data": (base, TRAIN[1] + pd.Timedelta(days=90)),
    }
    print(f"reference trained in {reference[2]:.0f} s")
    print(f"{'re-fit':28s} {'same position':>13s} {'max |dp|':>9s} {'corr':>6s} {'train s':>7s}")
    for index, (name, (config, stop)) in enumerate(variants.items()):
        positions, predictions, took = fit(candles, config, stop, root / f"v{index}")
        same = float((positions == reference[0]).mean())
        gap = float(np.nanmax(np.abs(predictions.to_numpy() - reference[1].to_numpy())))
        corr = float(np.corrcoef(predictions.to_numpy(), reference[1].to_numpy())[0, 1])
        print(f"{name:28s} {same:>13.1%} {gap:>9.2g} {corr:>6.3f} {took:>7.0f}")
    print("floor: the same procedure again must be 100.0% and 0 (what 'reproduces' requires)")


if __name__ == "__main__":
    main()
