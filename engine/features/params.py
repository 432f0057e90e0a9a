"""Which features a model uses, as plain data that travels in the model's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SENTIMENT_FEATURE = "fear_greed"


@dataclass(frozen=True)
class FeatureParams:
    """Look-back lengths (in bars) of the price features, and whether sentiment is one of them.

    Every feature of a bar reads that bar and earlier ones only, never a later one.
    Stored as `feature_params` in the metadata so inference rebuilds exactly these.
    """

    return_horizons: tuple[int, ...] = (1, 3, 6, 12, 24, 72)
    volatility_windows: tuple[int, ...] = (24, 72)
    range_window: int = 24
    volume_window: int = 24
    trend_window: int = 72
    use_sentiment: bool = False

    def __post_init__(self) -> None:
        for name in ("return_horizons", "volatility_windows"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(f"feature_params.{name} must be positive bar counts, got {values}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        for name in ("range_window", "volume_window", "trend_window"):
            if int(getattr(self, name)) < 2:
                raise ValueError(f"feature_params.{name} must be at least 2 bars")

    @property
    def feature_names(self) -> list[str]:
        names = [f"log_return_{h}" for h in self.return_horizons]
        names += [f"volatility_{w}" for w in self.volatility_windows]
        names += ["range", f"range_mean_{self.range_window}"]
        names += ["volume_change", f"volume_ratio_{self.volume_window}"]
        names += [f"close_to_mean_{self.trend_window}"]
        if self.use_sentiment:
            names.append(SENTIMENT_FEATURE)
        return names

    @property
    def lookback(self) -> int:
        """Bars before a row that its features read; the first `lookback` rows are warm-up."""
        return max(
            *self.return_horizons,
            *self.volatility_windows,
            self.range_window - 1,
            self.volume_window,
            self.trend_window - 1,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["return_horizons"] = list(self.return_horizons)
        data["volatility_windows"] = list(self.volatility_windows)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"feature_params has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)
