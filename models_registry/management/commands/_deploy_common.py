"""Shared parsing and output for the deployment commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError

from models_registry.management.commands._users import user_named
from models_registry.models import Deployment, DeploymentTarget
from models_registry.services import deployments

ENGINE_LINES = 12


def get_user(username: str | None) -> Any:
    return user_named(username, required_because="every deployment records who asked for it.")


def get_target(name: str) -> DeploymentTarget:
    target = DeploymentTarget.objects.filter(name=name).first()
    if target is None:
        target = DeploymentTarget.objects.filter(environment=name).order_by("id").first()
    if target is None:
        known = ", ".join(DeploymentTarget.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no deployment target {name!r} (known: {known}).")
    return target


def step_line(step: dict[str, Any]) -> str:
    mark = "ok " if step.get("ok") else "FAIL"
    return f"  [{mark}] {step.get('host', ''):<20} {step.get('name', ''):<22} {step.get('detail')}"


def run_or_wait(
    deployment: Deployment,
    *,
    inline: bool,
    wait: bool,
    timeout: float,
    progress: Callable[[str], None] | None = None,
) -> Deployment:
    """Run in this process (`--inline`), or wait for the worker to finish it; either way
    each step is handed to `progress` as it finishes."""
    if inline:
        claimed = deployments.deployment_claim(deployment.pk, task_id="inline")
        if claimed is not None:
            return deployments.deployment_execute(
                claimed, on_step=(lambda step: progress(step_line(step))) if progress else None
            )
        deployment.refresh_from_db()
        return deployment
    if not wait:
        return deployment
    printed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        steps = deployment.steps or []
        for step in steps[printed:]:
            if progress is not None:
                progress(step_line({**step, "name": step.get("name")}))
        printed = len(steps)
        if deployment.status in deployments.FINISHED:
            return deployment
        time.sleep(0.5)
    raise CommandError(
        f"deployment #{deployment.pk} still {deployment.status} after {timeout:.0f}s."
    )


def summary(deployment: Deployment) -> dict[str, Any]:
    return {
        "deployment": deployment.pk,
        "kind": deployment.kind,
        "target": deployment.target.name,
        "model": deployment.model_version.name,
        "version": deployment.model_version.version,
        "sha256": deployment.sha256,
        "status": deployment.status,
        "scheduled_for": deployment.scheduled_for.isoformat() if deployment.scheduled_for else None,
        "error": deployment.error,
        "steps": [
            {k: s.get(k) for k in ("host", "name", "ok", "seconds", "detail")}
            for s in deployment.steps
        ],
    }


def progress_printer(command: Any, as_json: bool) -> Callable[[str], None] | None:
    """Print each step as it happens (not with --json, whose output is one document)."""
    if as_json:
        return None

    def show(line: str) -> None:
        command.stdout.write(line)
        command.stdout.flush()

    return show


def print_result(
    command: Any, deployment: Deployment, as_json: bool, *, steps_printed: bool = False
) -> None:
    data = summary(deployment)
    if as_json:
        command.stdout.write(json.dumps(data, indent=2))
        return
    if not steps_printed:
        for step in data["steps"]:
            command.stdout.write(step_line(step))
    if deployment.log_tail.strip():
        # What the engine said when it started (the health check's log), last lines first
        # to scroll away: `model loaded: ...`, `ready in ...`, or why it refused.
        command.stdout.write("engine start-up:")
        for line in deployment.log_tail.strip().splitlines()[-ENGINE_LINES:]:
            command.stdout.write(f"  | {line}")
    command.stdout.write(
        f"{data['kind']} #{data['deployment']} of {data['model']} v{data['version']} "
        f"to {data['target']}: {data['status']}" + (f" ({data['error']})" if data["error"] else "")
    )
    if deployment.status not in ("succeeded", "queued", "scheduled"):
        raise CommandError(f"{data['kind']} #{data['deployment']} ended {data['status']}.")
