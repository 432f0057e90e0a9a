"""Each start-up check refuses its bad case: a clear log line naming it, non-zero exit, no trade."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.live.conftest import run_engine

ONNX = "btcusdt_sentiment.onnx"
METADATA = "btcusdt_sentiment_metadata.json"


def _edit_metadata(model_dir: Path, change: Callable[[dict], None]) -> None:
    path = model_dir / METADATA
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def _missing_onnx(model_dir: Path) -> None:
    (model_dir / ONNX).unlink()


def _tampered_onnx(model_dir: Path) -> None:
    data = bytearray((model_dir / ONNX).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / ONNX).write_bytes(bytes(data))


def _truncated_onnx(model_dir: Path) -> None:
    # The metadata is made to agree with the cut file, so only ONNX Runtime can notice.
    data = (model_dir / ONNX).read_bytes()[:200]
    (model_dir / ONNX).write_bytes(data)
    _edit_metadata(model_dir, lambda m: m.update(onnx_sha256=hashlib.sha256(data).hexdigest()))


def _expected_sha_disagrees(model_dir: Path) -> None:
    (model_dir / f"{ONNX}.sha256").write_text("0" * 64 + f"  {ONNX}\n")


def _metadata_of_another_model(model_dir: Path) -> None:
    _edit_metadata(model_dir, lambda m: m.update(name="ethusdt_sentiment", symbol="ETHUSDT"))


def _renamed_input(model_dir: Path) -> None:
    _edit_metadata(model_dir, lambda m: m["onnx"].update(input_name="candles"))


def _golden_outputs_moved(model_dir: Path) -> None:
    _edit_metadata(
        model_dir,
        lambda m: m["golden"].update(outputs=[[v[0] + 0.1] for v in m["golden"]["outputs"]]),
    )


BAD_CASES = [
    (_missing_onnx, "files_present"),
    (_tampered_onnx, "sha256"),
    (_truncated_onnx, "onnx_loads"),
    (_expected_sha_disagrees, "sha256"),
    (_metadata_of_another_model, "metadata_valid"),
    (_renamed_input, "io_signature"),
    (_golden_outputs_moved, "golden_parity"),
]


@pytest.mark.parametrize(("spoil", "check"), BAD_CASES, ids=[f.__name__[1:] for f, _ in BAD_CASES])
def test_engine_refuses_to_start(model_dir: Path, tmp_path: Path, spoil, check: str) -> None:
    spoil(model_dir)
    status_file, journal_dir = tmp_path / "status.json", tmp_path / "journal"
    result = run_engine(
        tmp_path, "ml_basic", "--paper-trading", "--model-dir", model_dir,
        "--status-file", status_file, "--journal-dir", journal_dir, "--replay",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert f"start-up check {check} failed" in result.stderr
    assert "model loaded:" not in result.stderr
    assert not journal_dir.exists(), "nothing may be journaled (or traded) before the checks pass"
    status = json.loads(status_file.read_text())
    assert status["state"] == "failed" and check in status["detail"]


def test_engine_refuses_a_model_for_another_symbol(model_dir: Path, tmp_path: Path) -> None:
    result = run_engine(
        tmp_path, "ml_basic", "--model-dir", model_dir, "--symbol", "ETHUSDT",
        "--status-file", tmp_path / "s.json", "--journal-dir", tmp_path / "j",
    )  # fmt: skip
    assert result.returncode == 3
    assert "start-up check engine_fit failed" in result.stderr
    assert "'BTCUSDT'" in result.stderr and "'ETHUSDT'" in result.stderr


def test_check_only_reports_every_check(model_dir: Path, tmp_path: Path) -> None:
    good = run_engine(tmp_path, "ml_basic", "--check-only", "--json", "--model-dir", model_dir)
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    names = [c["name"] for c in report["checks"]]
    assert names[:6] == [
        "files_present", "metadata_valid", "sha256", "onnx_loads", "io_signature", "golden_parity",
    ]  # fmt: skip
    assert {"engine_fit", "risk_limits", "journal"} <= set(names)
    assert report["ok"] is True

    _tampered_onnx(model_dir)
    bad = run_engine(tmp_path, "ml_basic", "--check-only", "--model-dir", model_dir)
    assert bad.returncode == 1
    assert "[FAIL] sha256:" in bad.stdout
    assert "checks FAILED" in bad.stdout
    assert not (tmp_path / "root" / "var").exists(), "--check-only writes nothing"
