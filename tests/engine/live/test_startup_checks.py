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


# --------------------------------------------------------------------------- policy costs


def _write_costs(model_dir: Path, **changes: object) -> Path:
    document: dict[str, object] = {
        "model_name": "btcusdt_sentiment",
        "fee_bps": 12.0,
        "slippage_bps": 6.0,
        "policy_id": 4,
        "policy_number": 2,
        "policy_label": "default",
        "policy_scope": "",
        "policy_hash": "cd" * 32,
    }
    document.update(changes)
    path = model_dir / "btcusdt_sentiment_costs.json"
    path.write_text(json.dumps(document))
    return path


def _replay_start(tmp_path: Path, model_dir: Path, data: Path, start, *extra: str):
    import pandas as pd

    return run_engine(
        tmp_path, "ml_basic", "--paper-trading", "--model-dir", model_dir,
        "--status-file", tmp_path / "status.json", "--journal-dir", tmp_path / "journal",
        "--replay", "--candles-csv", data / "BTCUSDT-1h.csv",
        "--sentiment-csv", data / "fear_greed_index.csv",
        "--from", start.isoformat(), "--to", (start + pd.Timedelta(hours=3)).isoformat(),
        *extra,
    )  # fmt: skip


def test_engine_trades_at_the_shipped_policy_costs_and_records_them(
    model_dir: Path, after_training, shared_data_dir: Path, tmp_path: Path
) -> None:
    path = _write_costs(model_dir)
    # threshold -1: the model's every bar says buy, so the replay fills an order.
    result = _replay_start(
        tmp_path, model_dir, shared_data_dir, after_training, "--threshold", "-1"
    )
    assert result.returncode == 0, result.stderr
    assert "trading costs: fee 12 bps, slippage 6 bps from policy" in result.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["costs"]["fee_bps"] == 12.0 and status["costs"]["slippage_bps"] == 6.0
    assert status["costs"]["policy_hash"] == "cd" * 32 and status["costs"]["at_policy"] is True
    assert status["costs"]["file"] == str(path)
    journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
    starts = [
        record
        for record in map(json.loads, journal.read_text().splitlines())
        if record["type"] == "session_start"
    ]
    assert starts[-1]["costs"] == status["costs"]
    fills = [
        record
        for record in map(json.loads, journal.read_text().splitlines())
        if record["type"] == "fill"
    ]
    assert fills, "the replay must trade for its fee to be checked"
    for fill in fills:  # each fee charged at the file's 12 bps, not the engine's default 10
        assert fill["fee"] == pytest.approx(abs(fill["quantity"] * fill["price"]) * 12e-4)


def test_engine_refuses_a_fee_flag_below_the_policy_costs(
    model_dir: Path, after_training, shared_data_dir: Path, tmp_path: Path
) -> None:
    _write_costs(model_dir)
    result = _replay_start(tmp_path, model_dir, shared_data_dir, after_training, "--fee-bps", "0")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "--fee-bps 0 is below the policy's 12" in errors[0]
    assert "model loaded:" not in result.stderr
    assert not (tmp_path / "journal").exists(), "nothing journaled (or traded)"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "below the policy's" in status["detail"]


def test_engine_refuses_a_malformed_costs_file_naming_file_and_field(
    model_dir: Path, tmp_path: Path
) -> None:
    path = _write_costs(model_dir, slippage_bps="5")
    result = run_engine(
        tmp_path, "ml_basic", "--model-dir", model_dir,
        "--status-file", tmp_path / "s.json", "--journal-dir", tmp_path / "j",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"costs file {path}: slippage_bps must be a number, got '5'" in result.stderr
    assert "model loaded:" not in result.stderr


def test_check_only_reports_the_costs_and_their_source(model_dir: Path, tmp_path: Path) -> None:
    without = run_engine(tmp_path, "ml_basic", "--check-only", "--json", "--model-dir", model_dir)
    check = next(c for c in json.loads(without.stdout)["checks"] if c["name"] == "costs")
    assert check["ok"] and check["costs"]["source"] == "engine defaults"
    assert "no policy costs file" in check["detail"]

    path = _write_costs(model_dir)
    shipped = run_engine(tmp_path, "ml_basic", "--check-only", "--json", "--model-dir", model_dir)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    check = next(c for c in json.loads(shipped.stdout)["checks"] if c["name"] == "costs")
    assert check["costs"]["source"] == "policy" and check["costs"]["fee_bps"] == 12.0
    assert str(path) in check["detail"]

    below = run_engine(
        tmp_path, "ml_basic", "--check-only", "--model-dir", model_dir, "--slippage-bps", "1"
    )
    assert below.returncode == 1
    assert "[FAIL] costs: trading costs: --slippage-bps 1 is below the policy's 6" in below.stdout
