#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    # Before anything can import TensorFlow: its C++ logs are set by the environment only.
    from engine.quiet import silence_tensorflow

    silence_tensorflow()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
