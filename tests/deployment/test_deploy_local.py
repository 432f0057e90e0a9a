"""A local target: the same steps through the local connection (no SSH), as the demo uses."""

from __future__ import annotations

import threading

from deployment.connection import LocalConnection, open_connection
from deployment.runner import deploy, read_status, reconcile, rollback
from deployment.targets import model_filenames
from tests.deployment.hosts import HANG_SECONDS
from tests.deployment.support import MODEL_NAME
from tests.deployment.test_deploy_ssh import (
    describe,
    failed_steps,
    run_until_swap,
    step_names,
    with_costs,
)


def test_local_target_deploys_and_rolls_back_without_ssh(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1, ssh=False)
    target = make_target([host])
    assert target.local
    assert isinstance(open_connection(target, host.spec), LocalConnection)

    outcome = deploy(target, v2, "local-1")

    assert outcome.status == "succeeded", describe(outcome)
    host.assert_serves(v2)
    assert "host key" not in next(r for r in outcome.steps if r.step == "connect").detail

    back = rollback(target, name=MODEL_NAME, deployment_id="local-rb")

    assert back.status == "succeeded", describe(back)
    host.assert_serves(v1)
    assert read_status(target, name=MODEL_NAME)["host1"].live_sha256 == v1.onnx_sha256


def test_local_rollback_to_a_kept_version_by_sha(host_factory, make_target, models):
    v1, v2, v3 = models.make(1), models.make(2), models.make(3)
    host = host_factory(v1, ssh=False)
    target = make_target([host])
    assert deploy(target, v2, "local-v2").status == "succeeded"
    assert deploy(target, v3, "local-v3").status == "succeeded"

    back = rollback(target, name=MODEL_NAME, deployment_id="local-to-v1", to_sha256=v1.onnx_sha256)

    assert back.status == "succeeded", describe(back)
    host.assert_serves(v1)


def test_local_rollback_to_registry_files(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v2, ssh=False)
    target = make_target([host])

    back = rollback(target, name=MODEL_NAME, deployment_id="local-art", to_artifact=v1)

    assert back.status == "succeeded", describe(back)
    assert back.operation == "rollback"
    assert "upload" in step_names(back.steps)
    host.assert_serves(v1)


def test_local_refused_model_rolls_back(host_factory, make_target, models):
    v1 = models.make(1)
    refused = models.make(2, metadata_sha256="f" * 64)
    host = host_factory(v1, ssh=False)
    target = make_target([host])

    outcome = deploy(target, refused, "local-refused")

    assert outcome.status == "rolled_back", describe(outcome)
    assert failed_steps(outcome.steps) == ["health_check"]
    host.assert_serves(v1)


def test_local_hanging_restart_is_killed_and_rolled_back(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1, ssh=False)
    # The fake restart hangs for ever; the budget is long enough for the real one, which the
    # rollback runs under the same timeout.
    target = make_target([host])
    (host.root / "hang-once").touch()

    outcome = deploy(target, v2, "local-hang")

    assert outcome.status == "rolled_back", describe(outcome)
    restart = next(r for r in outcome.steps if r.step == "restart")
    timeout = target.command_timeout
    assert not restart.ok and f"did not finish within {timeout:g} s" in restart.detail
    assert timeout <= restart.seconds < HANG_SECONDS, "killed at the timeout, not waited out"
    host.assert_serves(v1)


def test_local_reconcile_after_kill_between_swap_and_restart(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1, ssh=False)
    target = make_target([host])
    run_until_swap(target, host.spec, v2, "local-killed")

    result = reconcile(
        target,
        name=MODEL_NAME,
        deployment_id="local-killed",
        expected_new_sha=v2.onnx_sha256,
        previous_sha=v1.onnx_sha256,
    )

    assert result.result == "rolled_back", result.detail
    host.assert_serves(v1)


def test_first_deploy_to_an_empty_host(host_factory, make_target, models):
    v1 = models.make(1)
    host = host_factory(None, ssh=False)  # no model, no engine running yet
    target = make_target([host])

    outcome = deploy(target, v1, "local-first")

    assert outcome.status == "succeeded", describe(outcome)
    assert outcome.hosts["host1"].previous_sha256 is None
    assert "no current model" in next(r for r in outcome.steps if r.step == "backup").detail
    host.assert_serves(v1)


def test_rollback_without_a_backup_is_refused_and_changes_nothing(
    host_factory, make_target, models
):
    v1 = models.make(1)
    host = host_factory(v1, ssh=False)  # installed by hand: no .backup, no kept versions
    target = make_target([host])

    outcome = rollback(target, name=MODEL_NAME, deployment_id="local-nothing")

    assert outcome.status == "failed", describe(outcome)
    assert failed_steps(outcome.steps) == ["find_previous"]
    assert "no .backup model" in outcome.reason
    host.assert_serves(v1)


def test_step_callbacks_come_on_the_calling_thread_and_cannot_break_a_deploy(
    host_factory, make_target, models
):
    v1, v2 = models.make(1), models.make(2)
    first, second = host_factory(v1, ssh=False), host_factory(v1, ssh=False)
    target = make_target([first, second], parallelism=2)
    threads: set[int] = set()
    delivered: list[str] = []

    def on_step(record) -> None:
        threads.add(threading.get_ident())
        delivered.append(f"{record.host}:{record.step}")
        if record.step == "swap":
            raise RuntimeError("the database is down")  # must not stop the deployment

    outcome = deploy(target, v2, "local-cb", on_step)

    assert outcome.status == "succeeded", describe(outcome)
    assert threads == {threading.get_ident()}
    assert sorted(delivered) == sorted(f"{r.host}:{r.step}" for r in outcome.steps)
    assert "host1:health_check" in delivered and "host2:health_check" in delivered
    first.assert_serves(v2)
    second.assert_serves(v2)


def test_a_restore_without_the_previous_costs_is_refused_not_run_at_other_costs(
    host_factory, make_target, models
):
    """The previous model ran with a costs file; if its kept copy is gone, restoring the model
    alone would run it at the engine's defaults. The restore refuses: needs attention."""
    v1 = with_costs(models.make(1), 11.0, "a" * 64)
    refused = with_costs(models.make(2, metadata_sha256="f" * 64), 13.0, "b" * 64)
    host = host_factory(v1, ssh=False)
    target = make_target([host])
    costs = model_filenames(MODEL_NAME).costs

    def lose_the_kept_costs(record):
        if record.step == "backup" and record.ok:
            (host.root / "model-versions" / v1.onnx_sha256 / costs).unlink()
            (host.model_dir / f"{costs}.backup").unlink()

    outcome = deploy(target, refused, "local-lost-costs", lose_the_kept_costs)

    assert outcome.status == "needs_attention", describe(outcome)
    stage = next(r for r in outcome.steps if r.step == "rollback_stage")
    assert not stage.ok and "costs file" in stage.detail and "not kept" in stage.detail
