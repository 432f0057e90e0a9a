"""The Keras network and its fit: the only module besides export that touches TensorFlow."""

from __future__ import annotations

from typing import Any

from engine.quiet import silence_tensorflow

# Quiet TensorFlow's start-up chatter before it is first imported, also for a plain script
# that imports the engine without manage.py or the Celery app (which silence it first).
silence_tensorflow()

import keras  # noqa: E402 -- after the silencing above, on purpose
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine.training.config import EpochCallback, TrainingConfig  # noqa: E402


def seed_everything(seed: int) -> None:
    """Same seed, same data, same machine: same weights."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def devices() -> dict[str, Any]:
    gpus = tf.config.list_physical_devices("GPU")
    return {"gpu": [d.name for d in gpus], "device": "GPU" if gpus else "CPU"}


def build_model(
    config: TrainingConfig, n_features: int, target_mean: float, target_std: float
) -> keras.Model:
    """Window of feature rows -> next return. The last layer rescales to log-return units,

    so the network itself works on unit-scale numbers and the exported model
    outputs a log return directly.
    """
    inputs = keras.Input((config.window, n_features), name="features")
    if config.architecture == "lstm":
        x = keras.layers.LSTM(config.units)(inputs)
    else:
        x = keras.layers.Conv1D(config.units, config.kernel_size, activation="relu")(inputs)
        x = keras.layers.Conv1D(config.units, config.kernel_size, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(config.units // 2 or 1, activation="relu")(x)
    x = keras.layers.Dense(1)(x)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    if config.objective == "classification":
        # Logits while fitting; `calibrated` adds the Platt sigmoid that is exported.
        model = keras.Model(inputs, x, name="up_logit")
        model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True))
        return model
    outputs = keras.layers.Rescaling(target_std, offset=target_mean, name="prediction")(x)
    model = keras.Model(inputs, outputs, name="next_return")
    model.compile(optimizer=optimizer, loss="mse")
    return model


def platt_fit(logits: np.ndarray, labels: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(a, b) of P(up) = sigmoid(a * logit + b), by Newton steps on the log loss (Platt 1999)."""
    z, y = logits.astype("float64"), labels.astype("float64")
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        gradient = np.array([np.sum((p - y) * z), np.sum(p - y)])
        hessian = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        hessian += np.eye(2) * 1e-9
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def calibrated(model: keras.Model, a: float, b: float) -> keras.Model:
    """The classifier with its calibration inside the graph: outputs a probability."""
    scaled = keras.layers.Rescaling(a, offset=b)(model.output)
    outputs = keras.layers.Activation("sigmoid", name="prediction")(scaled)
    return keras.Model(model.input, outputs, name="up_probability")


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, total: int, on_epoch: EpochCallback) -> None:
        super().__init__()
        self._total = total
        self._on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._on_epoch(epoch + 1, self._total, {k: float(v) for k, v in (logs or {}).items()})


def fit_model(
    model: keras.Model,
    config: TrainingConfig,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    on_epoch: EpochCallback | None,
) -> dict[str, list[float]]:
    """Fit with early stopping on validation loss; the best epoch's weights are kept."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        )
    ]
    if on_epoch is not None:
        callbacks.append(_EpochReporter(config.epochs, on_epoch))
    history = model.fit(
        train[0],
        train[1],
        validation_data=validation,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def predict(model: keras.Model, windows: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    return model.predict(windows, batch_size=batch_size, verbose=0)[:, 0].astype("float32")
