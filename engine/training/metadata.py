"""Metadata facts about the run (versions, revision, hardware) and atomic JSON writes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "pandas",
)


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_revision() -> dict[str, Any]:
    """The git commit the code came from, or nulls when it is not a checkout."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": head or None, "dirty": dirty}


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def hardware(device: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "system": platform.system(),
        **device,
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_metadata_version(metadata_path: Path | str, version: int) -> dict[str, Any]:
    """Stamp the registry's version number. onnx_sha256 covers the ONNX file only, so it holds."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    path = Path(metadata_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["version"] = version
    write_json_atomic(path, data)
    return data
