"""The CI pipeline of docs/api.md, end to end: its own curl lines, run by bash against a live
server on PostgreSQL, with a real Celery worker running the validation."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from models_registry.models import AuditEvent, ModelState, ModelVersion, RunStatus, ValidationRun
from tests.api.conftest import token_for
from tests.conftest import PROJECT_ROOT
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures, used by name
    media,
    model_dir,
    store,
)
from tests.support.policy import ONE_WINDOW

DOC = PROJECT_ROOT / "docs" / "api.md"


def pipeline_script() -> str:
    text = DOC.read_text()
    block = re.search(
        r"<!-- ci-pipeline:start -->\s*```sh\n(.*?)```\s*<!-- ci-pipeline:end -->", text, re.S
    )
    assert block, "docs/api.md lost its pipeline block"
    return block.group(1)


@pytest.mark.slow
def test_the_documented_ci_pipeline_registers_validates_and_prints_the_verdict_and_policy(
    live_server: Any,
    engineer: Any,
    media: Path,  # noqa: F811
    store: Path,  # noqa: F811
    model_dir: Path,  # noqa: F811
    settings: Any,
    celery_worker_factory: Any,
    tmp_path: Path,
) -> None:
    # The default gates, untouched: the tiny model is judged as any model would be. The
    # window is the policy's, set to 10 days for both processes (the tiny store holds 400
    # unseen bars), and the printed policy says so.
    worker = celery_worker_factory(
        queues="backtest",
        env={
            "MEDIA_ROOT": str(media),
            "TRADEBOT_DATA_DIR": str(store),
            "TRADEBOT_VALIDATION_POLICY": json.dumps({"days": 10, **ONE_WINDOW}),
        },
        ready=False,
    )
    job_output = tmp_path / "job-output"  # what a training job left behind
    shutil.copytree(model_dir, job_output)
    workdir = tmp_path / "ci"
    workdir.mkdir()
    worker.wait_ready()

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", pipeline_script()],
        cwd=workdir,
        env={
            "PATH": os.environ["PATH"],
            "API": f"{live_server.url}/api/v1",
            "TRADEBOT_TOKEN": token_for(engineer, "ci-training"),
            "DIR": str(job_output),
            "CI_JOB_ID": "4711",
            "POLL_SECONDS": "1",
            # The tiny model saw 25 days, so no whole month of any kind: said, and on record.
            "CONDITIONS_REASON": "tiny test model trained on 25 days of 2024",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    printed = json.loads(result.stdout)
    artifacts = PROJECT_ROOT / "test-artifacts" / "api"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "pipeline.txt").write_text(result.stdout)

    version = ModelVersion.objects.get()
    run = ValidationRun.objects.get()
    assert printed["version"] == f"{version.name} v{version.version}"
    # A verdict either way; under the default gates (deflated Sharpe ratio, buy-and-hold) a
    # 25-day model fails, says which gates, and the version stays trained.
    assert printed["verdict"] == "failed" and run.status == RunStatus.FAILED, printed
    failing = {g["name"] for g in printed["gates"] if not g["passed"]}
    assert failing and failing == {g["name"] for g in run.gate_results if not g["passed"]}
    assert version.state == ModelState.TRAINED and version.source == "registered"
    # The policy it was judged under: the configured costs and window, not exploratory.
    assert printed["exploratory"] is False
    policy = printed["policy"]
    window = {"days": 10, "fee_bps": 10.0, "slippage_bps": 5.0, "end": None}
    assert {k: policy["costs_and_window"][k] for k in window} == window
    # Named, hashed and, where it is looser than the shipped defaults, saying how (issue 25).
    assert run.policy is not None and policy["hash"] == run.policy.content_hash
    assert policy["name"] and isinstance(policy["loosened"], list)
    assert {g["name"] for g in printed["gates"]} == {g["name"] for g in run.gate_results}
    assert printed["window"][0] is not None
    # Every step on record under the token's user, the override's reason included.
    override = AuditEvent.objects.get(event_type="market_conditions_override")
    assert override.data["reason"] == "tiny test model trained on 25 days of 2024"
    for event_type in (
        "model_version_registered",
        "validation_requested",
        "market_conditions_override",
    ):
        assert AuditEvent.objects.get(event_type=event_type).actor == engineer
