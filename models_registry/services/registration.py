"""Registering a model trained elsewhere, from an admin upload.

The uploaded names are ignored: the files are written under names derived from
the metadata, checked in a separate process with a time limit (so a hostile
file cannot crash or hang the web process), then stored like a trained version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from models_registry.models import ModelVersion
from models_registry.services.model_versions import (
    NAME_PATTERN,
    ArtifactError,
    model_version_register,
)

DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_METADATA_BYTES = 5 * 1024 * 1024


def max_upload_bytes() -> int:
    return int(getattr(settings, "TRADEBOT_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def model_version_register_upload(
    *,
    onnx_upload: Any,
    metadata_upload: Any,
    plot_upload: Any | None,
    registered_by: User,
    allow_missing_conditions: str | None = None,
) -> ModelVersion:
    if onnx_upload.size > max_upload_bytes():
        raise ArtifactError(
            f"the ONNX file is {onnx_upload.size} bytes; the limit is {max_upload_bytes()}."
        )
    if metadata_upload.size > MAX_METADATA_BYTES:
        raise ArtifactError(f"the metadata file is larger than {MAX_METADATA_BYTES} bytes.")
    try:
        metadata = json.loads(metadata_upload.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"the metadata file is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict) or not NAME_PATTERN.match(str(metadata.get("name", ""))):
        raise ArtifactError(
            "the metadata must be a JSON object whose name looks like 'btcusdt_sentiment'."
        )
    name = metadata["name"]
    symbol = str(metadata.get("symbol", "")).upper()
    folder = Path(tempfile.mkdtemp(prefix="tradebot-register-"))
    try:
        _write_upload(onnx_upload, folder / f"{name}.onnx")
        (folder / f"{name}_metadata.json").write_text(json.dumps(metadata))
        if plot_upload is not None:
            _write_upload(plot_upload, folder / f"{symbol}_{name.rsplit('_', 1)[1]}_training.png")
        version, _report = model_version_register(
            source_dir=folder,
            registered_by=registered_by,
            allow_missing_conditions=allow_missing_conditions,
        )
        return version
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_upload(upload: Any, path: Path) -> None:
    upload.seek(0)
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
