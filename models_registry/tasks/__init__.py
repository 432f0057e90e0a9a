"""Celery tasks, one module per area; importing them here lets autodiscovery find them.

Tasks take ids, fetch, call one service and report: no lifecycle logic lives here.
"""

from models_registry.tasks import (
    audit,
    backtest,
    data,
    deploy,
    hosts,
    maintenance,
    monitoring,
    paper,
    training,
    walk_forward,
    webhook,
)

__all__ = [
    "audit",
    "backtest",
    "data",
    "deploy",
    "hosts",
    "maintenance",
    "monitoring",
    "paper",
    "training",
    "walk_forward",
    "webhook",
]
