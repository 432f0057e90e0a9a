"""The demo's lifecycle steps after the data import (see models_registry/demo.py)."""

from __future__ import annotations

from collections.abc import Callable

from models_registry.models import ModelVersion

STEPS: list[Callable[..., ModelVersion | None]] = []
