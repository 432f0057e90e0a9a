"""Features: the one computation shared by training, backtesting and live trading.

Nothing here knows about TensorFlow or ONNX Runtime; a model"s metadata
(`feature_params`, `feature_names`, `normalization`, `window`) is all it needs
to rebuild the exact inputs a model was trained on.

Names are imported on first use (engine._lazy): the engine starts without pandas.
"""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.features.params import SENTIMENT_FEATURE, FeatureParams
    from engine.features.pipeline import (
        CandleArrays,
        FeatureError,
        ModelInputs,
        check_candles,
        check_no_gaps,
        compute_features,
        feature_matrix,
        feature_params_from_metadata,
        find_gaps,
        fit_normalization,
        latest_model_input,
        model_inputs,
        normalize,
        normalize_matrix,
        normalized_features,
        required_history,
        sliding_windows,
        windows_for_rows,
    )
    from engine.features.sentiment import sentiment_for_candles

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "engine.features.params": (
            "SENTIMENT_FEATURE",
            "FeatureParams",
        ),
        "engine.features.kernels": (
            "CandleArrays",
            "FeatureError",
            "feature_matrix",
            "feature_params_from_metadata",
            "normalize_matrix",
            "required_history",
            "sliding_windows",
        ),
        "engine.features.pipeline": (
            "ModelInputs",
            "check_candles",
            "check_no_gaps",
            "compute_features",
            "find_gaps",
            "fit_normalization",
            "latest_model_input",
            "model_inputs",
            "normalize",
            "normalized_features",
            "windows_for_rows",
        ),
        "engine.features.sentiment": ("sentiment_for_candles",),
    },
)

__all__ = [
    "SENTIMENT_FEATURE",
    "CandleArrays",
    "FeatureError",
    "FeatureParams",
    "ModelInputs",
    "check_candles",
    "check_no_gaps",
    "compute_features",
    "feature_matrix",
    "feature_params_from_metadata",
    "find_gaps",
    "fit_normalization",
    "latest_model_input",
    "model_inputs",
    "normalize",
    "normalize_matrix",
    "normalized_features",
    "required_history",
    "sentiment_for_candles",
    "sliding_windows",
    "windows_for_rows",
]
