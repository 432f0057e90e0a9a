"""Login lockout per user and address, with much higher per-address and per-user ceilings.

django-axes counts failures per lockout parameter and compares every count with one
limit. Locking a whole address after five wrong passwords lets one person behind a shared
address (an office, a VPN, the reverse proxy if misconfigured) lock every colleague out;
locking a user after five failures from anywhere lets anyone lock that user out. So:

- a user is locked **from one address** after ``AXES_FAILURE_LIMIT`` failures there;
- an address is locked for everyone after ``AXES_ADDRESS_FAILURE_LIMIT`` failures (a
  password spray over many user names from one address still ends);
- a user is locked from every address after ``AXES_USER_FAILURE_LIMIT`` failures (a
  spray of one user from many addresses still ends).

A successful login clears only that user's failures from that address.
"""

from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import QuerySet, Sum

DEFAULT_ADDRESS_FAILURE_LIMIT = 100
DEFAULT_USER_FAILURE_LIMIT = 50


def _failures(attempts: QuerySet[AccessAttempt]) -> int:
    return int(attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0)


class TieredLockoutHandler(AxesDatabaseHandler):
    """AXES_HANDLER: per (user, address) at the failure limit, per address and per user at
    their own, much higher, ceilings."""

    def _recent(self, request: Any) -> QuerySet[AccessAttempt]:
        attempts = AccessAttempt.objects.all()
        if settings.AXES_COOLOFF_TIME is not None:
            attempts = attempts.filter(attempt_time__gte=get_cool_off_threshold(request))
        return attempts

    def get_failures(self, request: Any, credentials: dict | None = None) -> int:
        """The (user, address) count, raised to the limit when a ceiling is reached, so
        axes' own comparison with AXES_FAILURE_LIMIT locks exactly when one of the three
        rules says so."""
        username = get_client_username(request, credentials)
        address = request.axes_ip_address
        recent = self._recent(request)
        pair = _failures(recent.filter(username=username, ip_address=address))
        by_address = _failures(recent.filter(ip_address=address))
        by_user = _failures(recent.filter(username=username)) if username else 0
        limit = int(settings.AXES_FAILURE_LIMIT)
        if by_address >= address_failure_limit() or by_user >= user_failure_limit():
            return max(pair, limit)
        return pair

    def reset_user_attempts(self, request: Any, credentials: dict | None = None) -> int:
        """After a successful login: only this user's failures from this address go."""
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(
            username=username, ip_address=request.axes_ip_address
        ).delete()
        return int(count)


def address_failure_limit() -> int:
    return int(getattr(settings, "AXES_ADDRESS_FAILURE_LIMIT", DEFAULT_ADDRESS_FAILURE_LIMIT))


def user_failure_limit() -> int:
    return int(getattr(settings, "AXES_USER_FAILURE_LIMIT", DEFAULT_USER_FAILURE_LIMIT))
