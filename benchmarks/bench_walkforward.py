"""Walk-forward evidence for ml_basic's defaults: horizon, objective and thresholds.

On the shipped BTCUSDT 1h history: the last WINDOWS consecutive evaluation windows of
EVAL_DAYS days. For each window a model is trained on the TRAIN_DAYS before it, ending a
purge gap (window + horizon bars) before the window opens, so no training input or target
touches the bars it is judged on. Each candidate (horizon, objective, entry/exit, min hold)
then trades the window through the real simulator at the product's default costs
(10 bps fee + 5 bps slippage per fill), never lowered. Per window it prints trades, total
return after costs, buy-and-hold over the same bars, and the hit rate (share of winning
trades); then the sums per candidate.

Small on purpose (2 shared cores, about 10 minutes): price-only models, few epochs. Say so
when quoting it: the figures are for these small models, not a full default run.

    .venv/bin/python benchmarks/bench_walkforward.py [--data-dir ../shared/data] [--epochs 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
WINDOWS = 6
EVAL_DAYS = 30
TRAIN_DAYS = 365
HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Candidate:
    """Fixed entry/exit levels, or (``quantiles``) levels read from the window's own model:
    quantiles of its calibrated probabilities on its model-selection split, as the training
    defaults do (``metadata["strategy"]["levels_from"]["quantiles"]``)."""

    label: str
    horizon: int
    objective: str
    entry: float
    exit: float
    min_hold: int = 0
    quantiles: bool = False

    @property
    def model_key(self) -> tuple[int, str]:
        return self.horizon, self.objective

    def levels(self, metadata: dict) -> tuple[float, float]:
        if not self.quantiles:
            return self.entry, self.exit
        recorded = metadata["strategy"]["levels_from"]["quantiles"]
        entry, exit_ = recorded[f"{self.entry:.2f}"], recorded[f"{self.exit:.2f}"]
        return entry, min(exit_, entry)


CANDIDATES = (
    Candidate("reg h4 e0/x0", 4, "regression", 0.0, 0.0),
    Candidate("cls h4 .52/.48", 4, "classification", 0.52, 0.48),
    Candidate("cls h4 q.60/q.40", 4, "classification", 0.60, 0.40, quantiles=True),
    Candidate("cls h4 q.70/q.50", 4, "classification", 0.70, 0.50, quantiles=True),
    Candidate("cls h4 q.80/q.50", 4, "classification", 0.80, 0.50, quantiles=True),
    Candidate("cls h4 q.90/q.60", 4, "classification", 0.90, 0.60, quantiles=True),
    Candidate("cls h4 q.70/q.50 hold4", 4, "classification", 0.70, 0.50, 4, quantiles=True),
    Candidate("cls h12 q.70/q.50", 12, "classification", 0.70, 0.50, quantiles=True),
    Candidate("cls h12 q.80/q.50", 12, "classification", 0.80, 0.50, quantiles=True),
    Candidate("cls h12 q.80/q.60 hold12", 12, "classification", 0.80, 0.60, 12, quantiles=True),
    Candidate("cls h24 q.70/q.50", 24, "classification", 0.70, 0.50, quantiles=True),
    Candidate("cls h24 q.80/q.60", 24, "classification", 0.80, 0.60, quantiles=True),
)


def load_candles(data_dir: Path) -> pd.DataFrame:
    raw = pd.read_csv(data_dir / "BTCUSDT-1h.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], utc=True), name="open_time")
    columns = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(raw[columns].to_numpy(dtype="float64"), index=index, columns=columns)
    frame = frame[~frame.index.duplicated()].sort_index()
    full = pd.date_range(frame.index[0], frame.index[-1], freq="1h", name="open_time")
    missing = len(full) - len(frame)
    if missing:
        # Same repair the product offers (--gap-policy ffill): flat bars at the last close.
        frame = frame.reindex(full)
        close = frame["close"].ffill()
        for column in ("open", "high", "low"):
            frame[column] = frame[column].fillna(close)
        frame["close"], frame["volume"] = close, frame["volume"].fillna(0.0)
        print(f"note: forward-filled {missing} missing hourly bars", flush=True)
    return frame


def train_window(candles, key, epochs, window_start, workdir):
    from engine.inference import OnnxPredictor
    from engine.training import TrainingConfig, train_model

    horizon, objective = key
    config = TrainingConfig(
        horizon=horizon, objective=objective, epochs=epochs, force_price_only=True
    )
    train_end = window_start - (config.purge + 1) * HOUR
    train = candles.loc[train_end - pd.Timedelta(days=TRAIN_DAYS) : train_end]
    result = train_model(
        train, None, config, workdir / f"{horizon}_{objective}_{window_start:%Y%m%d}"
    )
    return OnnxPredictor.from_dir(result.output_dir), result.metadata


def evaluate(candles, model, candidate, start, end):
    from engine.backtest.simulator import SimulationConfig, simulate
    from engine.strategies import get_strategy

    predictor, metadata = model
    entry, exit_ = candidate.levels(metadata)
    strategy = get_strategy(
        "ml_basic", predictor=predictor, entry=entry, exit=exit_, min_hold=candidate.min_hold
    )
    history = candles.loc[start - 30 * pd.Timedelta(days=1) : end]
    targets = strategy.targets(history).loc[start:end]
    result = simulate(candles.loc[start:end], targets, SimulationConfig())
    metrics = result.metrics
    return {
        "trades": metrics["n_trades"],
        "return": metrics["total_return"],
        "hold": metrics["buy_and_hold"]["total_return"],
        "hit": metrics["win_rate"] if metrics["n_trades"] else math.nan,
        "entry": entry,
        "exit": exit_,
    }


def entry_text(level: float) -> str:
    return f"{level:.4f}"


# A candidate trades as a strategy when it makes the min_trades gate's count in most windows;
# one long trade per window is buy-and-hold with extra costs, not a strategy.
MIN_TRADES = 3


def summarise(label: str, part: pd.DataFrame) -> dict:
    return {
        "label": label,
        "trades": int(part["trades"].sum()),
        "return": float((1 + part["return"]).prod() - 1),
        "hold": float((1 + part["hold"]).prod() - 1),
        "beats": int((part["return"] > part["hold"]).sum()),
        "trading": int((part["trades"] >= MIN_TRADES).sum()),
        "hit": float(part["hit"].mean()),
    }


def print_choice(summaries: list[dict]) -> None:
    """The rule the defaults follow: best compounded return after costs among real traders."""
    eligible = [s for s in summaries if s["trading"] > WINDOWS / 2]
    print(
        f"\nrule: among candidates with {MIN_TRADES}+ trades in more than half the windows, "
        "the highest compounded return after costs"
    )
    if not eligible:
        print("  no candidate trades as a strategy: no default can be chosen by this rule")
        return
    best = max(eligible, key=lambda s: s["return"])
    print(f"  chosen: {best['label']} ({best['return']:+.2%} vs buy&hold {best['hold']:+.2%})")
    if all(s["return"] <= s["hold"] for s in summaries):
        print("  no candidate beat buy-and-hold after costs over these windows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    candles = load_candles(args.data_dir)
    last = candles.index[-1]
    starts = [last + HOUR - (WINDOWS - i) * pd.Timedelta(days=EVAL_DAYS) for i in range(WINDOWS)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="walkforward-") as tmp:
        for number, start in enumerate(starts, 1):
            end = start + pd.Timedelta(days=EVAL_DAYS) - HOUR
            models = {}
            for candidate in CANDIDATES:
                if candidate.model_key not in models:
                    models[candidate.model_key] = train_window(
                        candles, candidate.model_key, args.epochs, start, Path(tmp)
                    )
                figures = evaluate(candles, models[candidate.model_key], candidate, start, end)
                rows.append(
                    {"window": number, "start": start, "candidate": candidate.label, **figures}
                )
                print(
                    f"window {number} {start:%Y-%m-%d}..{end:%Y-%m-%d}  {candidate.label:<22} "
                    f"trades {figures['trades']:>3}  return {figures['return']:+7.2%}  "
                    f"buy&hold {figures['hold']:+7.2%}  hit {figures['hit']:.2f}  "
                    f"entry {entry_text(figures['entry'])} exit {entry_text(figures['exit'])}",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    print(
        f"\nsummary over {WINDOWS} windows of {EVAL_DAYS} days (epochs {args.epochs}, price-only):"
    )
    summaries = [summarise(label, part) for label, part in table.groupby("candidate", sort=False)]
    for line in summaries:
        print(
            f"  {line['label']:<24} trades {line['trades']:>4}  return {line['return']:+7.2%}  "
            f"buy&hold {line['hold']:+7.2%}  windows beating buy&hold {line['beats']}/{WINDOWS}  "
            f"windows with {MIN_TRADES}+ trades {line['trading']}/{WINDOWS}  "
            f"mean hit {line['hit']:.2f}"
        )
    print_choice(summaries)
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
