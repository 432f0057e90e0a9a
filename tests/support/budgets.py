"""Time budgets for real processes, from one setting scaled for the machine.

A budget bounds how long the suite waits for a real process (an engine starting, a restart
finishing) before calling it failed. It never provokes a timeout a test needs: those come
from a fake that hangs for ever. Budgets are generous on a quiet machine and scaled up
where the machine is shared or slow:

    TRADEBOT_TEST_TIME_SCALE=4 pytest ...   # every budget four times longer

Unset, the scale is 1, or 3 when ``CI`` is set (a loaded runner).
"""

from __future__ import annotations

import math
import os

SCALE_VARIABLE = "TRADEBOT_TEST_TIME_SCALE"
CI_SCALE = 3.0


def time_scale() -> float:
    raw = os.environ.get(SCALE_VARIABLE)
    if raw is None:
        return CI_SCALE if os.environ.get("CI") else 1.0
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_VARIABLE} must be a number, got {raw!r}") from None
    if not math.isfinite(scale) or scale < 1:
        raise ValueError(f"{SCALE_VARIABLE} must be a number >= 1, got {raw!r}")
    return scale


def budget(seconds: float) -> float:
    """``seconds`` (the budget on a quiet machine) scaled for this one, whole seconds."""
    return float(math.ceil(seconds * time_scale()))
