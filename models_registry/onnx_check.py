"""Check an ONNX file in a separate, time-limited process.

A model file from outside is untrusted input: a hostile or corrupt file can
crash the ONNX parser or ONNX Runtime (native code) or make it run for ever.
``check_onnx_in_subprocess`` runs the checks in a child process
(``python -m models_registry.onnx_check PATH``) with a time and memory limit,
so whatever the file does, the caller only sees a refusal.

This module must not import Django (or onnx) at module level: the child has to
start fast, and the parent only needs the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Address space for the child: generous for any model we would deploy, small
# enough that a file expanding into huge tensors is stopped, not the machine.
DEFAULT_MEMORY_LIMIT_BYTES = 4 * 1024**3
_MAX_REPORTED_ERROR = 2000


def check_onnx_in_subprocess(
    path: Path | str,
    timeout: float,
    *,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run ``onnx.checker`` and an ONNX Runtime load of ``path`` in a child process.

    Returns the child's JSON report: ``ok``, ``error`` (when not ok), and for a
    good file ``sha256`` (of the bytes checked), ``opset``, ``inputs`` and
    ``outputs`` (name, element type, shape). A child that times out, crashes
    or prints no report gives ``ok: False`` with an ``error`` saying so.
    """
    command = [python, "-m", "models_registry.onnx_check", str(Path(path).resolve())]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        completed = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=lambda: _limit_child(memory_limit_bytes, timeout),
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"the ONNX check did not finish within {timeout:g} s."}
    except OSError as exc:
        return {"ok": False, "error": f"the ONNX check could not start: {exc}"}
    return _report_from(completed)


def _limit_child(memory_limit_bytes: int, timeout: float) -> None:
    import resource

    if memory_limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    cpu_seconds = int(timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _report_from(completed: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    if completed.returncode < 0:
        try:
            name = signal.Signals(-completed.returncode).name
        except ValueError:
            name = f"signal {-completed.returncode}"
        return {"ok": False, "error": f"the ONNX check crashed ({name}): the file is refused."}
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or "ok" not in report:
        stderr = completed.stderr.decode(errors="replace").strip()[-_MAX_REPORTED_ERROR:]
        return {
            "ok": False,
            "error": (
                f"the ONNX check exited with code {completed.returncode} without a report"
                + (f": {stderr}" if stderr else ".")
            ),
        }
    return report


# --- the child ---------------------------------------------------------------


def check_onnx_file(path: Path) -> dict[str, Any]:
    """The checks themselves; runs in the child process."""
    data = path.read_bytes()
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        return _failed(f"{path.name} is not an ONNX model: {exc}")
    if _uses_external_data(model):
        # External data names other files by path: never read those from an upload.
        return _failed(f"{path.name} refers to external tensor data; only self-contained files.")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        return _failed(f"{path.name} fails onnx.checker: {exc}")
    try:
        io = _runtime_io(data)
    except Exception as exc:
        return _failed(f"ONNX Runtime cannot load {path.name}: {exc}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {"ok": True, "sha256": hashlib.sha256(data).hexdigest(), "opset": opset, **io}


def _uses_external_data(model: Any) -> bool:
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    return any(
        tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL
        for tensor in _get_all_tensors(model)
    )


def _runtime_io(data: bytes) -> dict[str, Any]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        data, sess_options=options, providers=["CPUExecutionProvider"]
    )
    return {
        "inputs": [_describe(arg) for arg in session.get_inputs()],
        "outputs": [_describe(arg) for arg in session.get_outputs()],
    }


def _describe(arg: Any) -> dict[str, Any]:
    return {
        "name": arg.name,
        "type": arg.type,
        "shape": [d if d is not None else None for d in arg.shape],
    }


def _failed(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error[:_MAX_REPORTED_ERROR]}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(json.dumps(_failed("usage: python -m models_registry.onnx_check PATH")))
        return 2
    path = Path(argv[0])
    if not path.is_file():
        report = _failed(f"{path} is not a file.")
    else:
        try:
            report = check_onnx_file(path)
        except MemoryError:
            report = _failed(f"{path.name} needs more memory than the check allows.")
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
