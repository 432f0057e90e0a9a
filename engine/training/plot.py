"""The training plot: loss curves, test predictions against actual, market conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on workers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def write_training_plot(
    path: Path,
    title: str,
    history: dict[str, list[float]],
    test_index: pd.DatetimeIndex,
    test_actual: np.ndarray,
    test_predicted: np.ndarray,
    conditions: dict[str, Any],
) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(13, 8))
    figure.suptitle(title)
    _loss_curves(axes[0, 0], history)
    _predictions_over_time(axes[0, 1], test_index, test_actual, test_predicted)
    _predicted_vs_actual(axes[1, 0], test_actual, test_predicted)
    _market_conditions(axes[1, 1], conditions)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _loss_curves(ax: plt.Axes, history: dict[str, list[float]]) -> None:
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
    ax.set_title("loss (MSE of log return)")
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()


def _predictions_over_time(
    ax: plt.Axes, index: pd.DatetimeIndex, actual: np.ndarray, predicted: np.ndarray
) -> None:
    # Cumulative sums make a noisy hourly series readable at a glance.
    ax.plot(index, np.cumsum(actual), label="actual (cumulative)", linewidth=1)
    ax.plot(index, np.cumsum(predicted), label="predicted (cumulative)", linewidth=1)
    ax.set_title("test split: log returns")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend()


def _predicted_vs_actual(ax: plt.Axes, actual: np.ndarray, predicted: np.ndarray) -> None:
    ax.scatter(actual, predicted, s=3, alpha=0.4)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_title("test split: predicted vs actual")
    ax.set_xlabel("actual log return")
    ax.set_ylabel("predicted")


def _market_conditions(ax: plt.Axes, conditions: dict[str, Any]) -> None:
    shares = conditions["shares"]
    names = list(shares)
    ax.bar(names, [shares[n] for n in names], color=["tab:green", "tab:red", "tab:grey"])
    ax.set_ylim(0, 1)
    ax.set_title(
        f"training data: {conditions['windows']} windows of {conditions['window_days']} days "
        f"(+/-{conditions['threshold']:.0%})"
    )
    for i, name in enumerate(names):
        ax.text(i, shares[name] + 0.02, f"{shares[name]:.0%}", ha="center")


def write_trials_plot(path: Path, trials: list[dict[str, Any]], best: int, metric: str) -> None:
    """The search: each trial's selection metric in order, failed trials marked, best ringed."""
    figure, axis = plt.subplots(figsize=(9, 4.5))
    done = [t for t in trials if t["state"] == "complete"]
    failed = [t for t in trials if t["state"] != "complete"]
    axis.plot([t["number"] for t in done], [t["value"] for t in done], "o-", label="complete")
    if done:
        low = min(t["value"] for t in done)
        for t in failed:
            axis.axvline(t["number"], color="tab:red", alpha=0.4)
        chosen = [t for t in done if t["number"] == best]
        axis.scatter(
            [t["number"] for t in chosen], [t["value"] for t in chosen], s=160,
            facecolors="none", edgecolors="tab:green", label=f"best (trial {best})",
        )  # fmt: skip
        axis.axhline(low, color="tab:green", alpha=0.3)
    if failed:
        axis.plot([], [], color="tab:red", alpha=0.4, label="failed")
    axis.set_xlabel("trial")
    axis.set_ylabel(metric)
    axis.set_title(f"{len(trials)} search trials ({len(failed)} failed)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
