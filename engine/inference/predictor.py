"""Running a checked ONNX model over candles, with the shared feature code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from engine.features.kernels import FeatureError, required_history
from engine.inference.checks import (
    CheckResult,
    ModelFiles,
    files_for_dir,
    files_for_paths,
    raise_first_failure,
    run_checks,
)

if TYPE_CHECKING:  # frames are the batch path's; the live engine runs predict_windows only
    import pandas as pd

# Windows per ONNX Runtime call: big enough to amortise the call, small enough
# that a multi-year backtest does not hold every window's output twice.
DEFAULT_CHUNK_SIZE = 4096


def check_model_dir(model_dir: Path | str, name: str | None = None) -> list[CheckResult]:
    """Every start-up check of the model `name` (or the folder's only model), in order."""
    return run_checks(files_for_dir(model_dir, name))


class OnnxPredictor:
    """A model that passed every start-up check, ready to predict from candles."""

    def __init__(self, files: ModelFiles) -> None:
        if files.session is None or files.onnx_path is None or files.metadata_path is None:
            raise ValueError("OnnxPredictor needs files that passed the start-up checks")
        self._session: ort.InferenceSession = files.session
        self.metadata: dict[str, Any] = files.metadata
        self.sha256: str = files.sha256
        self.onnx_path: Path = files.onnx_path
        self.metadata_path: Path = files.metadata_path
        # Serving the kept previous model after the guide's manual rollback.
        self.serving_backup: bool = files.serving_backup
        self._input_name: str = self.metadata["onnx"]["input_name"]
        self.required_history: int = required_history(self.metadata)

    @classmethod
    def from_dir(cls, model_dir: Path | str, name: str | None = None) -> OnnxPredictor:
        """Load and check; raises ModelCheckError naming the first failed check."""
        return cls._checked(files_for_dir(model_dir, name))

    @classmethod
    def from_files(cls, onnx_path: Path | str, metadata_path: Path | str) -> OnnxPredictor:
        return cls._checked(files_for_paths(onnx_path, metadata_path))

    @classmethod
    def _checked(cls, files: ModelFiles) -> OnnxPredictor:
        raise_first_failure(run_checks(files))
        return cls(files)

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def version(self) -> int | None:
        return self.metadata["version"]

    @property
    def window(self) -> int:
        return int(self.metadata["window"])

    @property
    def uses_sentiment(self) -> bool:
        return bool(self.metadata["uses_sentiment"])

    def predict_windows(
        self, windows: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> np.ndarray:
        """Raw model outputs for already normalised windows [n, window, n_features]."""
        out = np.empty(len(windows), dtype="float32")
        for start in range(0, len(windows), chunk_size):
            chunk = np.ascontiguousarray(windows[start : start + chunk_size], dtype="float32")
            out[start : start + len(chunk)] = self._session.run(None, {self._input_name: chunk})[0][
                :, 0
            ]
        return out

    def predict(
        self,
        candles: pd.DataFrame,
        sentiment: pd.Series | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> pd.Series:
        """One prediction per bar, made at its close from it and earlier bars; NaN in warm-up."""
        import pandas as pd

        from engine.features.pipeline import model_inputs

        self._check_inputs(candles, sentiment)
        inputs = model_inputs(candles, sentiment, self.metadata)
        values = self.predict_windows(inputs.windows, chunk_size)
        result = pd.Series(np.nan, index=candles.index, name="prediction", dtype="float64")
        result.loc[inputs.index] = values.astype("float64")
        return result

    def predict_latest(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> float:
        """The prediction at the close of the last bar, from the last `required_history` bars."""
        from engine.features.pipeline import latest_model_input

        recent = candles.iloc[-self.required_history :]
        self._check_inputs(recent, sentiment)
        if len(recent) < self.required_history:
            raise FeatureError(
                f"{self.name} needs {self.required_history} bars of history, got {len(recent)}"
            )
        # Features of the last window's rows only: the batch path would cost ~10 ms per bar.
        window = latest_model_input(recent, sentiment, self.metadata)
        return float(self.predict_windows(window)[0])

    def _check_inputs(self, candles: pd.DataFrame, sentiment: pd.Series | None) -> None:
        if self.uses_sentiment and sentiment is None:
            raise FeatureError(f"{self.name} uses sentiment: pass the fear_greed series")
        from engine.data.intervals import interval_timedelta
        from engine.features.pipeline import check_no_gaps

        check_no_gaps(candles, interval_timedelta(self.metadata["interval"]))
