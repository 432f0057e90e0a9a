"""Silence TensorFlow's start-up noise in every command, worker and the demo.

TensorFlow's C++ core and absl write INFO lines, and ``E0000 ... node_def_util`` lines that
look like errors but are not, straight to stderr, before Python logging sees anything.
Only environment variables read when TensorFlow is first imported stop them, so this runs
first thing in ``manage.py`` and in the Celery app (which every Django process imports).
A user who needs them back sets ``TF_CPP_MIN_LOG_LEVEL=0`` (an explicit value wins).
Real failures still surface: as Python exceptions, which these settings do not touch.
"""

from __future__ import annotations

import logging
import os

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ core and absl: nothing below FATAL
    "GRPC_VERBOSITY": "ERROR",
    # TensorFlow 2.21 prints "oneDNN custom operations are on" through absl before it reads
    # TF_CPP_MIN_LOG_LEVEL, and no logging variable stops it; only switching the oneDNN
    # custom operations off does. They reorder floating-point sums: off, CPU results no
    # longer depend on the thread layout, which suits a registry that re-runs trainings.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}
# Python-side loggers of TensorFlow, absl and tf2onnx ("Using tensorflow=... onnx=...").
QUIET_LOGGERS = ("tensorflow", "absl", "tf2onnx", "h5py")


def silence_tensorflow() -> None:
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
