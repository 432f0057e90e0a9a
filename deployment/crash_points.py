"""Test-only crash points: kill -9 of this very process at a named step boundary.

With ``TRADEBOT_TEST_KILL_AT=<point>`` in its environment, a worker that reaches
``reached("<point>")`` sends itself SIGKILL there: no ``finally``, no rollback
handler, no Celery ack runs, exactly like a machine losing power or the OOM killer.
The tests use it to prove that every boundary of a deploy and of a validation
converges, through reconcile, to a consistent state.

Unset (always, outside those tests) ``reached`` is a no-op costing one environment
lookup. It is plain Python (no Django) so that ``deployment/`` and the registry can
both mark their boundaries.

Point names (each is "just after" what it names):
  deploy:    ``deploy_claimed``, ``step:<step>`` (a runner step done on the host and
             recorded by the controller, e.g. ``step:swap``), ``deploy_finish_recorded``
             (inside the finishing transaction, before the version moves),
             ``deploy_committed`` (committed, before the task returns and is acked)
  rollback:  the automatic rollback's steps are runner steps too, so ``step:rollback_connect``
             (the failed check on record, nothing restored), ``step:rollback_stage``,
             ``step:rollback_swap``, ``step:rollback_restart``, ``step:rollback_health_check``,
             then ``step:cleanup`` and the two deploy points above. A failed step never
             reaches its point (the kill would not be "just after" a step done)
  validation: ``validation_claimed``, ``validation_computed`` (backtest done, report
             published, nothing recorded), ``validation_recorded`` (inside the
             recording transaction, before the version moves), ``validation_committed``
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

ENV_VAR = "TRADEBOT_TEST_KILL_AT"


def armed(point: str) -> bool:
    return os.environ.get(ENV_VAR) == point


def reached(point: str, *, before: Callable[[], None] | None = None) -> None:
    """SIGKILL this process if ``point`` is the armed one; otherwise do nothing.

    ``before`` runs first (for example: wait until the controller has recorded the
    step that just finished), so the boundary is exactly where the name says.
    """
    if not armed(point):
        return
    if before is not None:
        before()
    # Loud, so a worker log says why it vanished (and nobody mistakes it for a bug).
    sys.stderr.write(f"{ENV_VAR}: SIGKILL of pid {os.getpid()} at crash point {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
