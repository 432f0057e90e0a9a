"""Celery tasks, one module per area; importing them here lets autodiscovery find them.

Tasks take ids, fetch, call one service and report: no lifecycle logic lives here.
"""

from importlib import import_module

TASK_MODULES = ("data", "training", "backtest", "paper", "deploy", "monitoring")

for _name in TASK_MODULES:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # an area not built yet must not break the others
        if exc.name != f"{__name__}.{_name}":
            raise
