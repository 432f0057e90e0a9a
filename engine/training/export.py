"""Keras -> ONNX with tf2onnx, then the ONNX Runtime vs Keras parity check."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from engine.inference import session_options

OPSET = 17
INPUT_NAME = "features"
OUTPUT_NAME = "prediction"
BATCH_DIM = "batch"


def export_onnx(model: keras.Model, window: int, n_features: int, path: Path) -> onnx.ModelProto:
    """Write the model with input `features` [batch, window, n_features], output `prediction`."""
    spec = (tf.TensorSpec([None, window, n_features], tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(features, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    # tf2onnx names the dynamic dimension "unk__N"; one readable name for both ends.
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(proto, full_check=True)
    path.write_bytes(proto.SerializeToString())
    return proto


def onnx_outputs(path: Path, windows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    outputs = []
    for start in range(0, len(windows), 4096):
        chunk = np.ascontiguousarray(windows[start : start + 4096], dtype="float32")
        outputs.append(session.run(None, {INPUT_NAME: chunk})[0][:, 0])
    return np.concatenate(outputs) if outputs else np.empty(0, dtype="float32")


def io_shapes(window: int, n_features: int) -> dict[str, object]:
    return {
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": [None, window, n_features],
        "output_shape": [None, 1],
        "opset": OPSET,
    }
