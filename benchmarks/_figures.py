"""Machine-readable figures: each benchmark records rows that `make bench` tabulates.

A row is one figure: tradebot's value, the peer or limit measured in the same run (if any),
their ratio (peer / tradebot: above 1 means tradebot is faster or smaller) and the target,
with whether it is met. Scripts keep their human output; ``--json PATH`` also writes rows.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

_ROWS: list[dict[str, Any]] = []
_COMPARE = {"<=": operator.le, ">=": operator.ge}


def record(
    figure: str,
    tradebot: float,
    unit: str,
    *,
    peer: float | None = None,
    peer_label: str | None = None,
    target: tuple[str, str, float] | None = None,
) -> None:
    """One figure. ``target`` is (what, op, value): what is "tradebot" or "ratio"."""
    ratio = peer / tradebot if peer is not None and tradebot else None
    met = None
    target_text = ""
    if target is not None:
        what, op, value = target
        measured = tradebot if what == "tradebot" else ratio
        met = None if measured is None else bool(_COMPARE[op](measured, value))
        target_text = f"{op} {value:g} {unit}" if what == "tradebot" else f"ratio {op} {value:g}x"
    _ROWS.append(
        {
            "figure": figure,
            "tradebot": tradebot,
            "unit": unit,
            "peer": peer,
            "peer_label": peer_label,
            "ratio": ratio,
            "target": target_text,
            "met": met,
        }
    )


def write(path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(_ROWS, indent=2))
