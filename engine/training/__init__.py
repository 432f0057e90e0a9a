"""Training: the only package that imports TensorFlow, Keras and tf2onnx.

TensorFlow loads when `train_model` runs, not when this package is imported,
so a Django process or Celery worker can import it cheaply.
"""

from engine.quiet import silence_tensorflow

# Before any module of this package imports TensorFlow (model, export): its C++ start-up
# lines are only stopped by environment variables read at its first import.
silence_tensorflow()

from engine.training.config import (  # noqa: E402
    MIN_HISTORY_DAYS,
    InsufficientHistoryError,
    TrainingConfig,
    TrainingError,
)
from engine.training.metadata import set_metadata_version  # noqa: E402
from engine.training.train import TrainingResult, train_model  # noqa: E402

__all__ = [
    "MIN_HISTORY_DAYS",
    "InsufficientHistoryError",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "set_metadata_version",
    "train_model",
]
