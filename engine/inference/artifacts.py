"""Artifact file names (docs/interfaces.md), shared by the writer (training) and readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL_KINDS = ("sentiment", "price")
METADATA_SUFFIX = "_metadata.json"


@dataclass(frozen=True)
class ArtifactNames:
    name: str
    onnx: str
    metadata: str
    plot: str
    expected_sha256: str


def model_name(symbol: str, kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    return f"{symbol.lower()}_{kind}"


def artifact_names(symbol: str, kind: str) -> ArtifactNames:
    """btcusdt_sentiment.onnx, btcusdt_sentiment_metadata.json, BTCUSDT_sentiment_training.png."""
    name = model_name(symbol, kind)
    return ArtifactNames(
        name=name,
        onnx=f"{name}.onnx",
        metadata=f"{name}{METADATA_SUFFIX}",
        plot=f"{symbol.upper()}_{kind}_training.png",
        expected_sha256=f"{name}.onnx.sha256",
    )


def model_names_in(model_dir: Path) -> list[str]:
    """Names of the models whose metadata file is in the folder."""
    return sorted(
        path.name[: -len(METADATA_SUFFIX)] for path in Path(model_dir).glob(f"*{METADATA_SUFFIX}")
    )
