"""register_model: a model trained elsewhere is checked out of process before it is stored."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from models_registry.models import AuditEvent, ModelState, ModelVersion
from models_registry.onnx_check import check_onnx_in_subprocess
from tests.registry.conftest import tiny_onnx_bytes

pytestmark = pytest.mark.django_db


def register(*args: str) -> str:
    out = io.StringIO()
    call_command("register_model", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> tuple[str, str]:
    out = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("register_model", *args, stdout=out)
    return str(error.value), out.getvalue()


def assert_nothing_registered(media_root: Path) -> None:
    assert not ModelVersion.objects.exists()
    store = media_root / "models"
    assert not store.exists() or list(store.iterdir()) == []


def test_a_good_folder_registers_a_trained_version(
    artifact_dir: Any, engineer: Any, media_root: Path
) -> None:
    folder = artifact_dir()
    result = json.loads(register(str(folder), "--user", engineer.username, "--json"))
    version = ModelVersion.objects.get()
    assert result["ok"] is True
    assert result["id"] == version.pk
    assert version.source == "registered"
    assert version.state == ModelState.TRAINED
    assert version.created_by_id == engineer.pk  # so four-eyes bars them from approving it
    assert [i["name"] for i in result["inputs"]] == ["features"]
    assert (media_root / version.artifact_dir / "btcusdt_price.onnx").is_file()
    assert AuditEvent.objects.filter(event_type="model_version_registered").count() == 1


def test_a_file_that_is_not_onnx_is_refused(
    artifact_dir: Any, engineer: Any, media_root: Path
) -> None:
    folder = artifact_dir(onnx_bytes=b"#!/bin/sh\necho not a model\n")
    message, out = refused(str(folder), "--user", engineer.username, "--json")
    assert "btcusdt_price.onnx" in message
    assert "not an ONNX model" in message
    assert json.loads(out)["ok"] is False
    assert_nothing_registered(media_root)
    refusal = AuditEvent.objects.get(event_type="model_version_register_refused")
    assert refusal.actor_id == engineer.pk


def test_an_invalid_graph_fails_the_checker(artifact_dir: Any, media_root: Path) -> None:
    from onnx import ModelProto

    model = ModelProto()
    model.ParseFromString(tiny_onnx_bytes(3.0))
    model.graph.node[1].input[1] = "no_such_tensor"
    message, _ = refused(str(artifact_dir(onnx_bytes=model.SerializeToString())))
    assert "onnx.checker" in message
    assert_nothing_registered(media_root)


def test_an_oversized_file_is_refused_before_it_is_read(
    artifact_dir: Any, settings: Any, media_root: Path
) -> None:
    settings.TRADEBOT_MAX_UPLOAD_BYTES = 100
    message, _ = refused(str(artifact_dir()))
    assert "above the limit of 100 bytes" in message
    assert "TRADEBOT_MAX_UPLOAD_BYTES" in message
    assert_nothing_registered(media_root)


def test_a_checker_that_does_not_finish_in_time_is_refused(
    artifact_dir: Any, settings: Any, media_root: Path
) -> None:
    settings.TRADEBOT_ONNX_CHECK_TIMEOUT = 0.01
    message, _ = refused(str(artifact_dir()))
    assert "did not finish within 0.01 s" in message
    assert_nothing_registered(media_root)


def test_metadata_naming_other_inputs_is_refused(artifact_dir: Any, media_root: Path) -> None:
    folder = artifact_dir(onnx={"input_name": "candles", "output_name": "prediction"})
    message, _ = refused(str(folder))
    assert "onnx.input_name is 'candles'" in message
    assert_nothing_registered(media_root)


def test_an_unknown_user_is_refused(artifact_dir: Any) -> None:
    message, _ = refused(str(artifact_dir()), "--user", "nobody")
    assert "no active user" in message
    assert not ModelVersion.objects.exists()


# --- the separate-process checker itself ------------------------------------------


def test_checker_reports_a_good_file(tmp_path: Path) -> None:
    data = tiny_onnx_bytes(2.0)
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    report = check_onnx_in_subprocess(path, 60)
    assert report["ok"] is True
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["opset"] == 17
    assert report["outputs"][0]["name"] == "prediction"


def test_a_checker_process_that_crashes_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    # Stands in for a file that makes the native parser segfault: the child dies by signal.
    crashing = tmp_path / "crashing-python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_onnx_bytes(2.0))
    report = check_onnx_in_subprocess(path, 10, python=str(crashing))
    assert report == {"ok": False, "error": report["error"]}
    assert "crashed (SIGSEGV)" in report["error"]
    assert os.path.exists(path)


def test_a_checker_that_prints_no_report_is_a_refusal(tmp_path: Path) -> None:
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\necho oops >&2\nexit 3\n")
    silent.chmod(0o755)
    report = check_onnx_in_subprocess(tmp_path / "m.onnx", 10, python=str(silent))
    assert report["ok"] is False
    assert "exited with code 3" in report["error"]
    assert "oops" in report["error"]


# --- declared windows must agree with the file's own splits (issue 12) --------------------------

SPLITS = {
    "train": {
        "first_input_bar": "2021-01-01T00:00:00+00:00",
        "last_target_bar": "2023-06-01T00:00:00+00:00",
    },
    "validation": {
        "first_input_bar": "2023-05-20T00:00:00+00:00",
        "last_target_bar": "2023-12-31T23:00:00+00:00",
    },
    "test": {
        "first_input_bar": "2023-12-20T00:00:00+00:00",
        "last_target_bar": "2024-06-01T00:00:00+00:00",
    },
}


def test_out_of_sample_from_inside_the_training_split_is_refused_naming_both_dates(
    artifact_dir: Any, media_root: Path
) -> None:
    # Observation 4 of issue 12: a model was judged "out of sample" on bars it was trained on.
    folder = artifact_dir(splits=SPLITS, out_of_sample_from="2023-03-01T00:00:00+00:00")
    message, _ = refused(str(folder))
    assert "out_of_sample_from 2023-03-01T00:00:00+00:00 is not after" in message
    assert "splits.train.last_target_bar 2023-06-01T00:00:00+00:00" in message
    assert_nothing_registered(media_root)


def test_out_of_sample_from_inside_the_selection_split_is_refused(
    artifact_dir: Any, media_root: Path
) -> None:
    folder = artifact_dir(splits=SPLITS, out_of_sample_from="2023-12-31T23:00:00+00:00")
    message, _ = refused(str(folder))
    assert "splits.validation.last_target_bar 2023-12-31T23:00:00+00:00" in message
    assert "chosen on those bars" in message
    assert_nothing_registered(media_root)


def test_a_split_reaching_past_the_data_is_refused(artifact_dir: Any, media_root: Path) -> None:
    splits = {**SPLITS, "test": {**SPLITS["test"], "last_target_bar": "2024-07-01T00:00:00Z"}}
    message, _ = refused(str(artifact_dir(splits=splits)))
    assert "splits.test.last_target_bar 2024-07-01T00:00:00+00:00 is after data.end" in message
    assert_nothing_registered(media_root)


def test_consistent_windows_register(artifact_dir: Any, media_root: Path) -> None:
    register(str(artifact_dir(splits=SPLITS)))  # out_of_sample_from 2024-01-01: after both
    assert ModelVersion.objects.count() == 1
