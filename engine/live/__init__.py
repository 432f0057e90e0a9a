"""The trading engine on a host: paper and live trading with a model loaded once at start-up.

Entry points: `python -m engine.live` (engine.live.cli) and `run_paper_replay` for an
in-process paper run over given candles (the Celery paper-trading task).
"""

from engine.live.paper import PaperRunResult, run_paper_replay

__all__ = ["PaperRunResult", "run_paper_replay"]
