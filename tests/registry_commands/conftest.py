"""Fixtures shared by the registry command tests: a tiny real store and a registered tiny model.

They are defined in test_run_backtest (the first module that needed them) and offered here
to the other modules of this folder, so every module gets the same store and model.
"""

from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures, used by name
    media,
    model_dir,
    store,
    version,
)
