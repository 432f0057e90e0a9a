"""Inference with ONNX Runtime only: a production host needs no TensorFlow."""

from engine.inference.artifacts import (
    MODEL_KINDS,
    ArtifactNames,
    artifact_names,
    model_name,
    model_names_in,
)
from engine.inference.checks import (
    CHECK_NAMES,
    REQUIRED_METADATA_KEYS,
    CheckResult,
    ModelCheckError,
    file_sha256,
    session_options,
)
from engine.inference.predictor import DEFAULT_CHUNK_SIZE, OnnxPredictor, check_model_dir

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_CHUNK_SIZE",
    "MODEL_KINDS",
    "REQUIRED_METADATA_KEYS",
    "ArtifactNames",
    "CheckResult",
    "ModelCheckError",
    "OnnxPredictor",
    "artifact_names",
    "check_model_dir",
    "file_sha256",
    "model_name",
    "model_names_in",
    "session_options",
]
