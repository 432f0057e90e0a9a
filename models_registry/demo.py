"""The demo's walk through the lifecycle, each step through the same commands a user runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def walk_lifecycle(*, users: dict[str, Any], say: Callable[[str], None]) -> None:
    say("lifecycle steps are added here as each capability lands")
