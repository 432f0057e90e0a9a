"""The look-ahead check: leak-detection rate per planted leak, and its cost on a 90-day window.

    .venv/bin/python benchmarks/bench_lookahead.py [--model-dir DIR]

Detection: the planted leaks of tests/engine/strategies/fakes.py run through `run_backtest`
on the test's real-candle windows (12 windows of 30 days, BTCUSDT and ETHUSDT); a window
counts as caught when the `lookahead` gate fails. Cost: `run_backtest ml_basic` on a 90-day
window after the model's training data, with the check on and off (best of 3). Without
--model-dir a tiny model (the tests' configuration, 2 epochs) is trained into a temp folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from engine.backtest import run_backtest  # noqa: E402
from engine.strategies import MlBasic, find_lookahead  # noqa: E402
from engine.strategies.lookahead import VARIANTS  # noqa: E402
from tests.engine.features.csv_frames import load_candles, load_sentiment  # noqa: E402
from tests.engine.strategies.test_lookahead_leaks import HONEST, LEAKS, _windows  # noqa: E402


def detection_rates(data_dir: Path) -> None:
    windows = _windows(data_dir)
    sentiment = load_sentiment(data_dir)
    for how in VARIANTS:  # each way of changing the future alone
        for kind, make in LEAKS.items():
            flagged = sum(
                find_lookahead(
                    MlBasic(make()),
                    frame,
                    sentiment,
                    first_bar=frame.index.get_loc(start),
                    variants=(how,),
                ).leak
                for _label, frame, start in windows
            )
            print(f"{how} only: leak {kind:<32} caught in {flagged}/{len(windows)} windows")
    for kind, make in {**LEAKS, **HONEST}.items():
        flagged, hows = 0, set()
        for _label, frame, start in windows:
            run = run_backtest(
                "ml_basic", frame, sentiment=sentiment, predictor=make(), start=start, gates={}
            )
            if run.lookahead is None:
                raise SystemExit(f"{kind}: run_backtest skipped the look-ahead check")
            if run.lookahead["leak"]:
                flagged += 1
                hows.add(run.lookahead["how"])
        role = "leak" if kind in LEAKS else "honest"
        print(
            f"{role:6} {kind:<40} flagged in {flagged}/{len(windows)} windows"
            f"{' (by ' + ', '.join(sorted(hows)) + ')' if hows else ''}"
        )


def tiny_model(data_dir: Path, folder: Path) -> Path:
    from engine.training import train_model
    from tests.engine.training.tiny_models import tiny_candles, tiny_config

    result = train_model(
        tiny_candles(data_dir),
        load_sentiment(data_dir),
        tiny_config(allow_short_history=False, min_history_days=1),
        folder / "model",
    )
    return result.output_dir


def check_cost(model_dir: Path, data_dir: Path) -> None:
    from engine.backtest.runner import load_metadata

    first_unseen = pd.Timestamp(load_metadata(model_dir)["out_of_sample_from"])
    candles = load_candles(data_dir)
    candles = candles.loc[first_unseen - pd.Timedelta(days=10) :]
    candles = candles.loc[: first_unseen + pd.Timedelta(days=90) - pd.Timedelta(hours=1)]
    sentiment = load_sentiment(data_dir)
    seconds, findings = {}, {}
    for check in (True, False):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            run = run_backtest(
                "ml_basic",
                candles,
                sentiment=sentiment,
                model_dir=model_dir,
                start=first_unseen,
                gates={},
                check_lookahead=check,
            )
            best = min(best, time.perf_counter() - started)
        seconds[check], findings[check] = best, run.lookahead
    print(
        f"run_backtest ml_basic, 90-day window ({len(run.result.equity)} bars, "
        f"{len(candles)} with warm-up), ONNX model {model_dir.name}: check on "
        f"{seconds[True]:.2f} s, off {seconds[False]:.2f} s, the check costs "
        f"{seconds[True] - seconds[False]:.2f} s ({findings[True]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="a trained model (default: train a tiny one)"
    )
    parser.add_argument("--data-dir", type=Path, default=PROJECT.parent / "shared" / "data")
    args = parser.parse_args()
    detection_rates(args.data_dir)
    if args.model_dir:
        check_cost(args.model_dir, args.data_dir)
        return
    with tempfile.TemporaryDirectory() as folder:
        check_cost(tiny_model(args.data_dir, Path(folder)), args.data_dir)


if __name__ == "__main__":
    main()
