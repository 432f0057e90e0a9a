"""Monitoring what runs in production, one concern per module:

- window: slot arithmetic and the bars a scheduled run judges;
- drift: the drift rules and the walk-forward stability summary (pure, over metrics);
- live: live against backtest (journals fetched by ``deployment.journals``);
- health: degraded / recovered / healthy, and the mail to approvers and deployers;
- scheduled: the scheduled runs (create or find the slot's run, execute, judge);
- walk_forward: the weekly walk-forward report.

The public names (and those tests use) are re-exported here, so
``from models_registry.services import monitoring; monitoring.X`` keeps working.
"""

from models_registry.services.monitoring.drift import drift_rules, live_rule, walk_forward_summary
from models_registry.services.monitoring.health import (
    model_version_flag_degraded,
    model_version_mark_passing,
    notify_approvers_degraded,
)
from models_registry.services.monitoring.live import (
    PRICE_EPSILON,
    STRATEGY,
    collect_journal,
    compare_live_with_backtest,
    live_comparison,
    version_records,
)
from models_registry.services.monitoring.scheduled import (
    ScheduledResult,
    ValidationOptions,
    _create_slot_run,
    _failed_gate_text,
    revalidate_production,
    scheduled_validation,
    scheduled_validation_run,
)
from models_registry.services.monitoring.walk_forward import (
    WALK_FORWARD_PARTS,
    walk_forward_report,
    walk_forward_reports,
)
from models_registry.services.monitoring.window import (
    WALK_FORWARD_SLOT_PREFIX,
    ScheduledWindow,
    WindowUnavailable,
    baseline_run,
    daily_slot,
    first_unjudged_bar,
    min_new_bars,
    scheduled_window,
    walk_forward_window,
    weekly_slot,
)

__all__ = [
    "PRICE_EPSILON",
    "STRATEGY",
    "WALK_FORWARD_PARTS",
    "WALK_FORWARD_SLOT_PREFIX",
    "ScheduledResult",
    "ScheduledWindow",
    "ValidationOptions",
    "WindowUnavailable",
    "_create_slot_run",
    "_failed_gate_text",
    "baseline_run",
    "collect_journal",
    "compare_live_with_backtest",
    "daily_slot",
    "drift_rules",
    "first_unjudged_bar",
    "live_comparison",
    "live_rule",
    "min_new_bars",
    "model_version_flag_degraded",
    "model_version_mark_passing",
    "notify_approvers_degraded",
    "revalidate_production",
    "scheduled_validation",
    "scheduled_validation_run",
    "scheduled_window",
    "version_records",
    "walk_forward_report",
    "walk_forward_reports",
    "walk_forward_summary",
    "walk_forward_window",
    "weekly_slot",
]
