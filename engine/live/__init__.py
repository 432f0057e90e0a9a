"""The trading engine on a host: paper and live trading with a model loaded once at start-up.

Entry points: `python -m engine.live` (engine.live.cli) and `run_paper_replay` for an
in-process paper run over given candles (the Celery paper-trading task).

Names are imported on first use (engine._lazy): the engine starts without pandas.
"""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.live.paper import PaperRunResult, run_paper_replay

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "engine.live.paper": (
            "PaperRunResult",
            "run_paper_replay",
        ),
    },
)

__all__ = ["PaperRunResult", "run_paper_replay"]
