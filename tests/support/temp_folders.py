"""What the test helpers need of pytest's ``TempPathFactory``: a new folder per call.

Typed as a protocol so that a benchmark outside pytest (benchmarks/bench_deploy.py) can pass
its own folder maker to the same helpers; pytest's factory satisfies it as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TempFolderFactory(Protocol):
    def mktemp(self, basename: str) -> Path:
        """A new, empty folder whose name starts with ``basename``."""
        ...
