"""Training: the only package that imports TensorFlow, Keras and tf2onnx.

TensorFlow loads when `train_model` runs, not when this package is imported,
so a Django process or Celery worker can import it cheaply.
"""

from engine.training.config import (
    MIN_HISTORY_DAYS,
    InsufficientHistoryError,
    TrainingConfig,
    TrainingError,
)
from engine.training.metadata import set_metadata_version
from engine.training.train import TrainingResult, train_model

__all__ = [
    "MIN_HISTORY_DAYS",
    "InsufficientHistoryError",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "set_metadata_version",
    "train_model",
]
