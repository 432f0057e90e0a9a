"""The engine's one plain-Python default cost, in basis points of a fill's notional.

Used where the engine runs without the registry (a script, ``python -m engine.live`` without
``--fee-bps``, a test). The registry never relies on it: validation, paper runs, monitoring
and the hosts take their costs from the validation policy in force
(``models_registry.policy.CostPolicy``), which is seeded from these values.
"""

from __future__ import annotations

DEFAULT_FEE_BPS = 10.0  # Binance spot taker fee, 0.1%
DEFAULT_SLIPPAGE_BPS = 5.0  # half a typical BTCUSDT hourly spread plus impact, 0.05%
