"""Login lockout against a model of its rule, over generated sequences of attempts (#26).

The rule (tradebot/login_lockout.py): a user is locked from one address after
AXES_FAILURE_LIMIT failures there; an address for everyone after AXES_ADDRESS_FAILURE_LIMIT;
a user from everywhere after AXES_USER_FAILURE_LIMIT. A successful login clears that user's
failures from that address; an attempt while locked counts as a failure. Every attempt
goes through the real admin login view, and its status must be the model's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.registry.conftest import make_user

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
USERS = ("ann", "bob", "ghost")  # ghost has no account
ADDRESSES = ("192.0.2.1", "192.0.2.2", "198.51.100.3")
PAIR, ADDRESS, USER = 3, 6, 5


class LockoutModel:
    def __init__(self) -> None:
        self.failures: Counter[tuple[str, str]] = Counter()

    def locked(self, user: str, address: str) -> bool:
        by_address = sum(n for (_, a), n in self.failures.items() if a == address)
        by_user = sum(n for (u, _), n in self.failures.items() if u == user)
        return self.failures[(user, address)] >= PAIR or by_address >= ADDRESS or by_user >= USER

    def attempt(self, user: str, address: str, right: bool) -> int:
        """The status the login view should answer, and the new state."""
        if self.locked(user, address):
            self.failures[(user, address)] += 1
            return 429
        if right and user != "ghost":
            del self.failures[(user, address)]
            return 302
        self.failures[(user, address)] += 1
        return 429 if self.locked(user, address) else 200


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    attempts=st.lists(
        st.tuples(st.sampled_from(USERS), st.sampled_from(ADDRESSES), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
def test_every_attempt_gets_the_models_answer(
    attempts: list[tuple[str, str, bool]], settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = PAIR
    settings.AXES_ADDRESS_FAILURE_LIMIT = ADDRESS
    settings.AXES_USER_FAILURE_LIMIT = USER
    AccessAttempt.objects.all().delete()
    for name in ("ann", "bob"):
        if not get_user_model().objects.filter(username=name).exists():
            make_user(name)
    model = LockoutModel()
    for number, (user, address, right) in enumerate(attempts):
        password = f"pw-{user}" if right else "wrong"
        status = (
            Client()
            .post(LOGIN, {"username": user, "password": password}, REMOTE_ADDR=address)
            .status_code
        )
        expected = model.attempt(user, address, right)
        assert status == expected, (number, user, address, right, attempts[: number + 1])
