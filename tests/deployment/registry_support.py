"""Registry rows for the deployment tests: versions made from the real tiny engine models
and walked through the lifecycle services, and targets whose hosts are the test hosts.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from deployment.targets import ArtifactSpec
from models_registry import selectors
from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentHost,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
)
from models_registry.services import lifecycle
from models_registry.services.deployments import artifact_spec
from models_registry.services.model_versions import model_version_create
from tests.deployment.hosts import FakeHost
from tests.registry.conftest import (
    finished_deployment,
    passing_forward_run,
    passing_paper_run,
    passing_validation_run,
)

PAPER_BARS = 24 * 31  # above every model's paper.min_bars gate


def register_version(
    artifact: ArtifactSpec, folder: Path, engineer: Any, *, break_golden: bool = False
) -> ModelVersion:
    """Register the files of a test model as the registry would a trained one.

    The tiny model is trained on short history (which no gate ever passes): its
    metadata is marked otherwise so it can walk the lifecycle. `break_golden`
    shifts the golden outputs so the engine refuses the model at start-up.
    """
    folder.mkdir(parents=True)
    shutil.copy(artifact.onnx_path, folder / artifact.onnx_path.name)
    metadata = json.loads(artifact.metadata_path.read_text())
    metadata["allow_short_history"] = False
    if break_golden and "golden" in metadata:
        golden = metadata["golden"]
        golden["outputs"] = [[value + 1.0 for value in row] for row in golden["outputs"]]
    (folder / artifact.metadata_path.name).write_text(json.dumps(metadata))
    return model_version_create(source_dir=folder, created_by=engineer)


def walk_to(
    version: ModelVersion,
    state: str,
    *,
    engineer: Any,
    approver: Any,
    staging_records: DeploymentTarget | None = None,
) -> ModelVersion:
    """Walk `version` up to `state` with recorded evidence. From staged on, the staging
    evidence is a recorded deployment to `staging_records` (a target never deployed to),
    and paper_tested a recorded passing forward run there."""
    order = [ModelState.VALIDATED, ModelState.STAGED, ModelState.PAPER_TESTED, ModelState.APPROVED]
    for step in order[: order.index(state) + 1]:
        if step == ModelState.VALIDATED:
            start = (version.out_of_sample_from or version.data_end) + timedelta(hours=1)
            run = passing_validation_run(
                version, window_start=start, window_end=start + timedelta(days=90)
            )
            lifecycle.model_version_validate(
                model_version=version, validation_run=run, actor=engineer
            )
            passing_paper_run(version, bars=PAPER_BARS)  # the replay pre-check staging needs
        elif step == ModelState.STAGED:
            assert staging_records is not None
            evidence = finished_deployment(version, staging_records, engineer)
            lifecycle.model_version_stage(
                model_version=version, deployment=evidence, actor=engineer
            )
        elif step == ModelState.PAPER_TESTED:
            staged_by = selectors.successful_staging_deployment(version)
            assert staged_by is not None
            lifecycle.model_version_mark_paper_tested(
                model_version=version,
                paper_run=passing_forward_run(version, staged_by, bars=PAPER_BARS),
                actor=engineer,
            )
        elif step == ModelState.APPROVED:
            lifecycle.model_version_approve(
                model_version=version, approved_by=approver, comment="read the backtest and staging"
            )
    return ModelVersion.objects.get(pk=version.pk)


def staging_records_target() -> DeploymentTarget:
    return DeploymentTarget.objects.create(
        name="staging-records", environment=Environment.STAGING, is_local=True
    )


def ssh_target(
    name: str, environment: str, hosts: list[FakeHost], user_key: Path, **fields: Any
) -> DeploymentTarget:
    """A registry target whose hosts are the test hosts (restart script, `tail` as the log)."""
    settings: dict[str, Any] = {
        "environment": environment,
        "ssh_user": "root",
        "ssh_key_path": str(user_key),
        "known_hosts": "".join(host.server.known_hosts_line() for host in hosts if host.server),
        "restart_command": "/bin/sh {install_root}/bin/restart.sh",
        "log_command": "tail -n 200 {install_root}/var/engine.log",
        "health_timeout_seconds": 30,
        "command_timeout_seconds": 30,
        **fields,
    }
    target = DeploymentTarget.objects.create(name=name, **settings)
    for host in hosts:
        assert host.server is not None
        DeploymentHost.objects.create(
            target=target,
            hostname="127.0.0.1",
            port=host.server.port,
            install_root=host.spec.install_root,
            upload_dir=host.spec.upload_dir,
        )
    return target


def registry_files(version: ModelVersion) -> ArtifactSpec:
    """The files the registry ships for `version` (its stored metadata, not the source's)."""
    return artifact_spec(version)


def audit_types(obj: Any) -> list[str]:
    """Event types recorded about `obj`, oldest first."""
    return list(
        AuditEvent.objects.filter(object_type=type(obj).__name__, object_id=str(obj.pk))
        .order_by("id")
        .values_list("event_type", flat=True)
    )


def audit_data(obj: Any, event_type: str) -> dict[str, Any]:
    event = (
        AuditEvent.objects.filter(
            object_type=type(obj).__name__, object_id=str(obj.pk), event_type=event_type
        )
        .order_by("-id")
        .first()
    )
    assert event is not None, f"no {event_type} event for {obj}: {audit_types(obj)}"
    return event.data


def step_names(deployment: Deployment) -> list[str]:
    return [step["name"] for step in deployment.steps]


def describe(deployment: Deployment) -> str:
    """What a failing assertion should show: status, error and every step."""
    lines = [f"{deployment.status}: {deployment.error}"]
    lines += [
        f"  {s['host']} {s['name']} ok={s['ok']} {str(s['detail'])[:300]}" for s in deployment.steps
    ]
    return "\n".join(lines)
