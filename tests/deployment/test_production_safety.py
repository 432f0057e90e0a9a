"""Issue 14, findings 1, 3 and 6 against real OpenSSH hosts on loopback running the engine.

- a host runs one named model: another name is refused before any upload;
- a rollback that does not end with a healthy engine is `needs_attention`, and the
  rollback's restart is retried;
- an engine without market data is not healthy;
- the guide's manual rollback (`cp ....onnx.backup ....onnx`, restart) serves the
  previous model, and the host's state says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from deployment.runner import deploy, read_status
from deployment.targets import ArtifactSpec, model_filenames
from tests.deployment.hosts import free_port
from tests.deployment.support import MODEL_NAME, PROJECT_ROOT
from tests.deployment.test_deploy_ssh import describe, failed_steps, step_names

OTHER_NAME = "btcusdt_price"


def renamed(artifact: ArtifactSpec, name: str, tmp_path) -> ArtifactSpec:
    folder = tmp_path / f"as-{name}"
    folder.mkdir()
    names = model_filenames(name)
    shutil.copy(artifact.onnx_path, folder / names.onnx)
    metadata = json.loads(artifact.metadata_path.read_text())
    metadata["name"] = name
    (folder / names.metadata).write_text(json.dumps(metadata))
    return ArtifactSpec.from_files(
        name=name,
        version=artifact.version,
        onnx_path=folder / names.onnx,
        metadata_path=folder / names.metadata,
    )


def test_another_model_name_is_refused_before_any_upload(
    host_factory, make_target, models, tmp_path
):
    v1 = models.make(1)
    host = host_factory(v1)
    price = renamed(models.make(2), OTHER_NAME, tmp_path)

    outcome = deploy(make_target([host]), price, "dep-other-name")

    assert outcome.status == "failed", describe(outcome)
    assert MODEL_NAME in outcome.reason and OTHER_NAME in outcome.reason
    assert "upload" not in step_names(outcome.steps)
    assert failed_steps(outcome.steps) == ["preflight"]
    assert not (host.upload_dir / "dep-other-name").exists()
    host.assert_serves(v1)  # one complete model, the engine still on it
    assert not any(name.startswith(OTHER_NAME) for name in host.model_files())


def test_rollback_restart_is_retried_until_the_previous_version_is_healthy(
    host_factory, make_target, models
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    # the forward restart fails, then the rollback's first restart fails too
    (host.root / "fail-restarts").write_text("2\n")

    outcome = deploy(make_target([host], rollback_retries=2), v2, "dep-retry")

    assert outcome.status == "rolled_back", describe(outcome)
    assert failed_steps(outcome.steps) == ["restart", "rollback_restart"]
    assert [r.ok for r in outcome.steps if r.step == "rollback_health_check"] == [True]
    host.assert_serves(v1)


def no_market_data_engine(host, engine_setup) -> None:
    """Rewrite the host's service command: paper trading on a market it cannot reach."""
    dead = f"http://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "engine.live", "ml_basic", "--paper-trading",
        "--model-dir", str(host.model_dir), "--model", MODEL_NAME,
        "--status-file", str(host.status_file),
        "--journal-dir", str(host.root / "var" / "journal-live"),
        "--binance-url", dead, "--poll-seconds", "1",
    ]  # fmt: skip
    script = host.restart_script.read_text().splitlines()
    start = next(i for i, line in enumerate(script) if "setsid" in line)
    script[start] = (
        f"PYTHONPATH={PROJECT_ROOT} setsid {' '.join(command)} "
        '>> "$ROOT/var/engine.log" 2>&1 < /dev/null &'
    )
    host.restart_script.write_text("\n".join(script) + "\n")


def test_engine_without_market_data_fails_the_health_check(
    host_factory, make_target, models, engine
):
    if not engine[0].real:
        pytest.skip("needs the real engine")
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    no_market_data_engine(host, engine[0])
    target = make_target([host], health_timeout=8, rollback_retries=0)

    outcome = deploy(target, v2, "dep-no-data")

    health = next(r for r in outcome.steps if r.step == "health_check")
    assert not health.ok
    assert "no candle" in health.detail and "market data" in health.detail, health.detail
    # the engine itself said it was running: that alone is not healthy
    assert host.status().get("state") == "running"
    assert host.status().get("last_data_at") is None
    # the restored previous version cannot get data either: never "rolled_back"
    assert outcome.status == "needs_attention", describe(outcome)
    assert outcome.needs_attention


def test_guide_manual_rollback_serves_the_backup(host_factory, make_target, models, engine):
    if not engine[0].real:
        pytest.skip("needs the real engine's start-up checks")
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    head = '{"last_id":7,"row_hash":"' + "ab" * 32 + '"}'
    outcome = deploy(target, v2, "dep-forward", audit_anchor=head)
    assert outcome.status == "succeeded", describe(outcome)
    names = model_filenames(MODEL_NAME)
    assert (host.model_dir / (names.metadata + ".backup")).is_file()
    # the registry's audit chain head, kept on the host at each deploy
    assert (host.root / "audit-anchor.json").read_text() == head + "\n"
    # and appended to its log of heads, which a later shorter head cannot erase (#26)
    assert (host.root / "audit-anchor.log").read_text().splitlines()[-1] == head

    # the guide: cp src/ml/btcusdt_sentiment.onnx.backup src/ml/btcusdt_sentiment.onnx
    subprocess.run(
        ["cp", f"src/ml/{names.onnx}.backup", f"src/ml/{names.onnx}"], cwd=host.root, check=True
    )
    host.restart()
    host.wait_until_serving(v1.onnx_sha256)

    status = host.status()
    assert status["serving_backup"] is True
    assert status["model_version"] == 1
    deadline = time.monotonic() + 10
    log = ""
    while "SERVING THE BACKUP MODEL" not in log and time.monotonic() < deadline:
        log = (host.root / "var" / "engine.log").read_text()
        time.sleep(0.1)
    assert "SERVING THE BACKUP MODEL" in log
    state = read_status(target, name=MODEL_NAME)["host1"].state
    assert state is not None
    assert state.serving_backup and state.files_consistent
    assert state.serves(v1.onnx_sha256)
    assert not state.serves(v2.onnx_sha256)


def test_backup_metadata_of_other_bytes_is_still_refused(host_factory, make_target, models):
    """Only a file matching the kept previous metadata is accepted: anything else is exit 3."""
    v1, v2, v3 = models.make(1), models.make(2), models.make(3)
    host = host_factory(v1)
    target = make_target([host])
    assert deploy(target, v2, "dep-forward").status == "succeeded"
    names = model_filenames(MODEL_NAME)
    shutil.copy(v3.onnx_path, host.model_dir / names.onnx)  # neither current nor kept

    host.restart()

    deadline = time.monotonic() + 30
    while host.status().get("state") != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host.status().get("state") == "failed", host.status()
    assert host.status().get("pid") == host.engine_pid()
    assert "sha256" in host.status().get("detail", "")


def test_a_preflight_failure_is_one_sentence_with_the_command_in_the_log(
    host_factory, make_target, models
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    shutil.rmtree(host.model_dir)

    outcome = deploy(make_target([host]), v2, "dep-no-dir")

    preflight = next(r for r in outcome.steps if r.step == "preflight")
    assert not preflight.ok
    assert preflight.detail == (
        f"preflight failed on the host (exit 1): model directory {host.model_dir} missing"
    )
    assert outcome.reason == f"host1: {preflight.detail}"
    assert preflight.log_excerpt.startswith("$ ") and "@@section" in preflight.log_excerpt
