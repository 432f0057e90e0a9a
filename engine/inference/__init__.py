"""Inference with ONNX Runtime only: a production host needs no TensorFlow.

Names are imported on first use (engine._lazy): the engine starts without pandas.
"""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "engine.inference.artifacts": (
            "MODEL_KINDS",
            "ArtifactNames",
            "artifact_names",
            "model_name",
            "model_names_in",
        ),
        "engine.inference.checks": (
            "CHECK_NAMES",
            "REQUIRED_METADATA_KEYS",
            "CheckResult",
            "ModelCheckError",
            "file_sha256",
            "session_options",
        ),
        "engine.inference.predictor": (
            "DEFAULT_CHUNK_SIZE",
            "OnnxPredictor",
            "check_model_dir",
        ),
    },
)

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
