"""The baseline every report compares with: long 1.0 on every bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class BuyAndHold:
    name = "buy_and_hold"

    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        import pandas as pd

        return pd.Series(1.0, index=candles.index, name="target")
