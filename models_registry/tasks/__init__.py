"""Celery tasks, one module per area; importing them here lets autodiscovery find them.

Tasks take ids, fetch, call one service and report: no lifecycle logic lives here.
"""

from models_registry.tasks import (
    backtest,
    data,
    deploy,
    hosts,
    monitoring,
    paper,
    training,
    walk_forward,
    webhook,
)

__all__ = [
    "backtest",
    "data",
    "deploy",
    "hosts",
    "monitoring",
    "paper",
    "training",
    "walk_forward",
    "webhook",
]
