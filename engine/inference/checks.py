"""Start-up checks of a model's files, in order; each named, each with a clear detail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from engine.features.kernels import FeatureError, feature_params_from_metadata
from engine.inference.artifacts import METADATA_SUFFIX, model_names_in

CHECK_NAMES = (
    "files_present",
    "metadata_valid",
    "sha256",
    "onnx_loads",
    "io_signature",
    "golden_parity",
)

REQUIRED_METADATA_KEYS = (
    "name",
    "version",
    "symbol",
    "interval",
    "kind",
    "uses_sentiment",
    "feature_names",
    "feature_params",
    "window",
    "horizon",
    "target",
    "normalization",
    "onnx",
    "onnx_sha256",
    "golden",
    "data",
    "splits",
    "out_of_sample_from",
    "allow_short_history",
)
REQUIRED_NESTED_KEYS = {
    "onnx": ("input_name", "output_name", "input_shape", "output_shape", "opset"),
    "golden": ("inputs", "outputs", "tolerance"),
    "normalization": ("mean", "std"),
    "data": ("start", "end", "content_hash"),
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class ModelCheckError(Exception):
    """A model file failed the named start-up check."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"model check {check} failed: {detail}")
        self.check = check
        self.detail = detail


class _Failed(Exception):
    pass


@dataclass
class ModelFiles:
    """What the checks learn on the way; complete only when every check passed."""

    name: str | None
    onnx_path: Path | None
    metadata_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    onnx_bytes: bytes = b""
    sha256: str = ""
    session: ort.InferenceSession | None = None
    # The model matched the kept previous metadata (`<metadata>.backup`), not the current.
    serving_backup: bool = False

    def model_paths(self) -> tuple[Path, Path]:
        """The ONNX and metadata files; known only once a model is named (files_present)."""
        if self.name is None or self.onnx_path is None or self.metadata_path is None:
            raise _Failed("no model is named: files_present must pass first")
        return self.onnx_path, self.metadata_path

    def loaded_session(self) -> ort.InferenceSession:
        """The ONNX Runtime session; there only once onnx_loads passed."""
        if self.session is None:
            raise _Failed("the ONNX model is not loaded: onnx_loads must pass first")
        return self.session


def files_for_dir(model_dir: Path | str, name: str | None) -> ModelFiles:
    """Which files a folder holds for `name` (or its only model); unresolved names stay None."""
    model_dir = Path(model_dir)
    if name is None:
        names = model_names_in(model_dir) if model_dir.is_dir() else []
        name = names[0] if len(names) == 1 else None
    elif name.endswith(".onnx"):
        name = name[: -len(".onnx")]
    if name is None:
        return ModelFiles(name=None, onnx_path=None, metadata_path=model_dir)
    return ModelFiles(
        name=name,
        onnx_path=model_dir / f"{name}.onnx",
        metadata_path=model_dir / f"{name}{METADATA_SUFFIX}",
    )


def files_for_paths(onnx_path: Path | str, metadata_path: Path | str) -> ModelFiles:
    onnx_path = Path(onnx_path)
    return ModelFiles(
        name=onnx_path.name.removesuffix(".onnx"),
        onnx_path=onnx_path,
        metadata_path=Path(metadata_path),
    )


def run_checks(files: ModelFiles) -> list[CheckResult]:
    """Run every check in order; after a failure the rest are reported as not run."""
    steps: list[tuple[str, Callable[[ModelFiles], str]]] = [
        ("files_present", _check_files_present),
        ("metadata_valid", _check_metadata_valid),
        ("sha256", _check_sha256),
        ("onnx_loads", _check_onnx_loads),
        ("io_signature", _check_io_signature),
        ("golden_parity", _check_golden_parity),
    ]
    results: list[CheckResult] = []
    failed: str | None = None
    for name, step in steps:
        if failed is not None:
            results.append(CheckResult(name, False, f"not run: {failed} failed"))
            continue
        try:
            results.append(CheckResult(name, True, step(files)))
        except _Failed as error:
            results.append(CheckResult(name, False, str(error)))
            failed = name
    return results


def raise_first_failure(results: list[CheckResult]) -> None:
    for result in results:
        if not result.ok:
            raise ModelCheckError(result.name, result.detail)


def _check_files_present(files: ModelFiles) -> str:
    if files.name is None:
        folder = files.metadata_path
        names = model_names_in(folder) if folder and folder.is_dir() else []
        if not names:
            raise _Failed(f"no *{METADATA_SUFFIX} in {folder}")
        raise _Failed(f"{folder} holds several models ({', '.join(names)}): name one")
    onnx_path, metadata_path = files.model_paths()
    missing = [str(p) for p in (onnx_path, metadata_path) if not p.is_file()]
    if missing:
        raise _Failed(f"missing file(s): {', '.join(missing)}")
    return f"{onnx_path.name}, {metadata_path.name}"


def _check_metadata_valid(files: ModelFiles) -> str:
    path = files.model_paths()[1]
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise _Failed(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise _Failed(f"{path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    if not isinstance(metadata, dict):
        raise _Failed(f"{path} must hold a JSON object")
    missing = [key for key in REQUIRED_METADATA_KEYS if key not in metadata]
    for key, nested in REQUIRED_NESTED_KEYS.items():
        if isinstance(metadata.get(key), dict):
            missing += [f"{key}.{n}" for n in nested if n not in metadata[key]]
        elif key in metadata:
            missing.append(f"{key} (must be an object)")
    if missing:
        raise _Failed(f"{path} lacks key(s): {', '.join(missing)}")
    if metadata["name"] != files.name:
        raise _Failed(
            f"{path} describes model {metadata['name']!r}, not {files.name!r} "
            "(metadata of another model)"
        )
    try:
        params = feature_params_from_metadata(metadata)
    except (FeatureError, TypeError, ValueError) as error:
        raise _Failed(f"{path}: feature_params: {error}") from None
    if params.use_sentiment != bool(metadata["uses_sentiment"]):
        raise _Failed(f"{path}: uses_sentiment disagrees with feature_params.use_sentiment")
    files.metadata = metadata
    return f"{metadata['name']} version={metadata['version']}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(files: ModelFiles) -> str:
    # Read once: the bytes that are hashed are the bytes that get loaded.
    onnx_path = files.model_paths()[0]
    files.onnx_bytes = onnx_path.read_bytes()
    actual = hashlib.sha256(files.onnx_bytes).hexdigest()
    recorded = str(files.metadata["onnx_sha256"]).lower()
    if actual != recorded:
        if not _use_backup_metadata(files, actual):
            raise _Failed(f"{onnx_path.name} has sha256 {actual}, metadata says {recorded}")
        files.sha256 = actual
        return f"{actual} (matches the kept previous metadata {files.model_paths()[1].name})"
    expected_file = onnx_path.with_name(onnx_path.name + ".sha256")
    if expected_file.is_file():
        words = expected_file.read_text(encoding="utf-8").split()
        expected = words[0].lower() if words else ""
        if actual != expected:
            raise _Failed(
                f"{onnx_path.name} has sha256 {actual}, {expected_file.name} "
                f"expects {expected or '(empty file)'}"
            )
    files.sha256 = actual
    return actual


BACKUP_SUFFIX = ".backup"


def _use_backup_metadata(files: ModelFiles, actual: str) -> bool:
    """The guide's manual rollback copies `<name>.onnx.backup` over the model and leaves the
    metadata of the newer version beside it. Every deploy keeps the previous metadata as
    `<metadata>.backup`: if that one is valid and describes exactly these bytes, check and
    serve the model against it (every later check still runs, on that metadata)."""
    onnx_path, metadata_path = files.model_paths()
    backup = metadata_path.with_name(metadata_path.name + BACKUP_SUFFIX)
    if not backup.is_file():
        return False
    candidate = ModelFiles(name=files.name, onnx_path=onnx_path, metadata_path=backup)
    try:
        _check_metadata_valid(candidate)
    except _Failed:
        return False
    if str(candidate.metadata["onnx_sha256"]).lower() != actual:
        return False
    files.metadata, files.metadata_path, files.serving_backup = (
        candidate.metadata,
        backup,
        True,
    )
    return True


def session_options() -> ort.SessionOptions:
    """One thread: the engine runs one window per bar, and for one window a second thread
    only adds hand-over (measured, benchmarks/bench_live.py: p50 8 us with one thread, 10 us
    with two, and a p99 of 1.6 ms with two when the host is busy, against 11 us)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _check_onnx_loads(files: ModelFiles) -> str:
    try:
        files.session = ort.InferenceSession(
            files.onnx_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # ORT raises several unrelated types for a bad file
        raise _Failed(f"ONNX Runtime cannot load {files.model_paths()[0].name}: {error}") from None
    return f"onnxruntime {ort.__version__}"


def _shape_matches(actual: list[Any], expected: list[Any]) -> bool:
    if len(actual) != len(expected):
        return False
    for got, want in zip(actual, expected, strict=True):
        dynamic = not isinstance(got, int)
        if want is None and not dynamic:
            return False
        if want is not None and got != want:
            return False
    return True


def _check_io_signature(files: ModelFiles) -> str:
    session, onnx_meta = files.loaded_session(), files.metadata["onnx"]
    window = int(files.metadata["window"])
    n_features = len(files.metadata["feature_names"])
    expected_input = [None, window, n_features]
    if list(onnx_meta["input_shape"]) != expected_input:
        raise _Failed(
            f"metadata onnx.input_shape {onnx_meta['input_shape']} disagrees with window "
            f"{window} and {n_features} features"
        )
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise _Failed(
            f"model has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1"
        )
    for kind, node, name, shape in (
        ("input", inputs[0], onnx_meta["input_name"], onnx_meta["input_shape"]),
        ("output", outputs[0], onnx_meta["output_name"], onnx_meta["output_shape"]),
    ):
        if node.name != name:
            raise _Failed(f"model {kind} is named {node.name!r}, metadata says {name!r}")
        if not _shape_matches(list(node.shape), list(shape)):
            raise _Failed(f"model {kind} {name!r} has shape {node.shape}, metadata says {shape}")
        if node.type != "tensor(float)":
            raise _Failed(f"model {kind} {name!r} is {node.type}, expected tensor(float)")
    return f"{inputs[0].name}{expected_input} -> {outputs[0].name}{onnx_meta['output_shape']}"


def _check_golden_parity(files: ModelFiles) -> str:
    golden = files.metadata["golden"]
    try:
        inputs = np.asarray(golden["inputs"], dtype="float32")
        expected = np.asarray(golden["outputs"], dtype="float32")
        tolerance = float(golden["tolerance"])
    except (TypeError, ValueError) as error:
        raise _Failed(f"golden sample is malformed: {error}") from None
    session = files.loaded_session()
    try:
        actual = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    except Exception as error:  # a wrong golden shape surfaces as an ORT error
        raise _Failed(f"golden inputs {inputs.shape} do not run: {error}") from None
    if actual.shape != expected.shape:
        raise _Failed(f"golden outputs have shape {expected.shape}, model gives {actual.shape}")
    diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if not diff <= tolerance:
        raise _Failed(f"golden outputs differ by {diff:.3g}, tolerance {tolerance:.3g}")
    return f"max abs diff {diff:.3g} on {len(inputs)} samples (tolerance {tolerance:.3g})"
