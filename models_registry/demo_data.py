"""The demo's shipped data and its import, shared by the demo's two halves (demo.py,
demo_steps.py) so neither imports the other back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command

DEMO_DATA = Path(settings.BASE_DIR) / "demo" / "data"
DEMO_SYMBOL = "BTCUSDT"
# The demo holds back the last weeks of the shipped history and imports them later, as
# the hourly refresh would, so Celery beat's re-validation has new bars to judge.
HELD_BACK_FROM = "2025-04-24"


def call_json(command: str, *args: str, **options: Any) -> dict[str, Any]:
    out = io.StringIO()
    call_command(command, *args, json=True, stdout=out, **options)
    return json.loads(out.getvalue())


def import_candles(path: Path) -> dict[str, Any]:
    return call_json(
        "import_klines", str(path), symbol=DEMO_SYMBOL, interval="1h", on_gaps="fill", max_fill=3
    )
