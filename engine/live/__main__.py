"""`python -m engine.live ml_basic --paper-trading`: see engine.live.cli."""

import sys

from engine.live.cli import main

sys.exit(main())
