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
from models_registry.safe_files import (
    max_bytes,
    parse_metadata,
    refuse_oversized,
    safe_name,
    shown,
)
from models_registry.services.model_versions import (
    NAME_PATTERN,
    ArtifactError,
    audited_registration_refusal,
    model_version_register,
)
from models_registry.services.temp_sweep import owner_mark

DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_METADATA_BYTES = 5 * 1024 * 1024  # kept for importers; the cap is safe_files.max_bytes


def max_upload_bytes() -> int:
    return int(getattr(settings, "TRADEBOT_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


@audited_registration_refusal
def model_version_register_upload(
    *,
    onnx_upload: Any,
    metadata_upload: Any,
    plot_upload: Any | None,
    registered_by: User,
    allow_missing_conditions: str | None = None,
) -> ModelVersion:
    """Every name is built by safe_name from checked metadata before anything is written;
    the temporary folder goes whatever happens, and a refusal stores nothing."""
    refuse_oversized(onnx_upload.size, kind="onnx", what="the ONNX file")
    refuse_oversized(metadata_upload.size, kind="metadata", what="the metadata file")
    if plot_upload is not None:
        refuse_oversized(plot_upload.size, kind="plot", what="the training plot")
    metadata = parse_metadata(metadata_upload.read(), source="the metadata file")
    names = upload_file_names(metadata)
    folder = Path(tempfile.mkdtemp(prefix=REGISTER_TEMP_PREFIX))
    try:
        owner_mark(folder)
        _write_upload(onnx_upload, folder / names["onnx"], kind="onnx")
        (folder / names["metadata"]).write_text(json.dumps(metadata))
        if plot_upload is not None:
            _write_upload(plot_upload, folder / names["plot"], kind="plot")
        version, _report = model_version_register(
            source_dir=folder,
            registered_by=registered_by,
            allow_missing_conditions=allow_missing_conditions,
        )
        return version
    finally:
        shutil.rmtree(folder, ignore_errors=True)


REGISTER_TEMP_PREFIX = "tradebot-register-"


def upload_file_names(metadata: dict[str, Any]) -> dict[str, str]:
    """The three file names an upload is written under, all from safe_name (#26)."""
    name = metadata.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ArtifactError(
            "the metadata must be a JSON object whose name looks like 'btcusdt_sentiment'."
        )
    symbol = metadata.get("symbol")
    if not isinstance(symbol, str) or not name.startswith(symbol.lower() + "_"):
        raise ArtifactError(f"the metadata's symbol {shown(symbol)} does not match name {name!r}.")
    kind = name.rsplit("_", 1)[1]
    return {
        "onnx": safe_name(name, suffix=".onnx"),
        "metadata": safe_name(name, "metadata", suffix=".json"),
        "plot": safe_name(symbol.upper(), kind, "training", suffix=".png"),
    }


def _write_upload(upload: Any, path: Path, *, kind: str) -> None:
    """Write a new file (never over an existing one), counting bytes against the cap:
    an upload's declared size is not trusted."""
    upload.seek(0)
    limit, written = max_bytes(kind), 0
    with path.open("xb") as out:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > limit:
                raise ArtifactError(f"the {kind} file is above its limit of {limit} bytes.")
            out.write(chunk)
