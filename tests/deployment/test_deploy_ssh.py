"""Deployments over real SSH to throwaway OpenSSH servers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from deployment import steps
from deployment.connection import (
    HostConnectionError,
    HostKeyRejected,
    SshConnection,
    open_connection,
)
from deployment.runner import StepRecord, deploy, read_status, reconcile, rollback
from deployment.targets import HostSpec, TargetSpec, model_filenames
from tests.deployment.hosts import HANG_SECONDS
from tests.deployment.support import MODEL_NAME
from tests.support.budgets import budget


def step_names(records: list[StepRecord], host: str | None = None) -> list[str]:
    return [record.step for record in records if host is None or record.host == host]


def describe(outcome) -> str:
    """What a failing assertion should show: the reason and every step."""
    lines = [f"{outcome.status}: {outcome.reason}"]
    lines += [f"  {r.host} {r.step} ok={r.ok} {r.detail[:200]}" for r in outcome.steps]
    return "\n".join(lines)


def failed_steps(records: list[StepRecord]) -> list[str]:
    return [record.step for record in records if not record.ok]


def pinned_target(server, user_key, known_hosts: str) -> TargetSpec:
    return TargetSpec(
        name="pinned",
        hosts=[HostSpec("127.0.0.1", port=server.port)],
        ssh_user="root",
        ssh_key_path=str(user_key),
        known_hosts_text=known_hosts,
        connect_timeout=5,
    )


def test_fixture_ssh_server_accepts_a_key_login(ssh_server_factory, ssh_user_key):
    server = ssh_server_factory()
    target = pinned_target(server, ssh_user_key, server.known_hosts_line())

    connection = open_connection(target, target.hosts[0])
    try:
        assert isinstance(connection, SshConnection)
        result = connection.run("echo logged-in-as-$(id -un)", timeout=5)
    finally:
        connection.close()

    assert result.ok
    assert result.stdout.strip() == "logged-in-as-root"


def test_remote_command_timeout_kills_the_command_on_the_host(ssh_server_factory, ssh_user_key):
    server = ssh_server_factory()
    target = pinned_target(server, ssh_user_key, server.known_hosts_line())
    pid_file = server.directory / "sleeper.pid"
    connection = open_connection(target, target.hosts[0])
    try:
        started = time.monotonic()
        result = connection.run(f"echo $$ > {pid_file}; exec sleep 30", timeout=1)
        elapsed = time.monotonic() - started
    finally:
        connection.close()

    assert result.timed_out and not result.ok
    assert elapsed < 30, "the command was cut off, not waited out"
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + budget(3)
    while Path(f"/proc/{sleeper}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{sleeper}").exists(), "the timed-out command still runs on the host"


def test_clean_deploy_then_rollback(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    seen: list[StepRecord] = []

    outcome = deploy(target, v2, "dep-1", seen.append)

    assert outcome.status == "succeeded", describe(outcome)
    host.assert_serves(v2)
    assert step_names(seen, "host1") == [
        "connect",
        "preflight",
        "upload",
        "verify",
        "stage",
        "backup",
        "swap",
        "restart",
        "health_check",
        "cleanup",
    ]
    assert all(record.ok for record in seen)
    health = next(record for record in seen if record.step == "health_check")
    assert f"sha256={v2.onnx_sha256}" in health.log_excerpt
    assert outcome.hosts["host1"].previous_sha256 == v1.onnx_sha256
    assert not (host.upload_dir / "dep-1").exists()
    # the guide's .backup copy and the kept version
    assert host.model_files()[f"{MODEL_NAME}.onnx.backup"] == v1.onnx_sha256
    assert (host.root / "model-versions" / v1.onnx_sha256).is_dir()

    back = rollback(target, name=MODEL_NAME, deployment_id="rb-1")

    assert back.status == "succeeded", back.reason
    assert back.operation == "rollback"
    host.assert_serves(v1)
    # rolling back keeps what it replaced, so a second rollback would go forward again
    assert host.model_files()[f"{MODEL_NAME}.onnx.backup"] == v2.onnx_sha256
    status = read_status(target, name=MODEL_NAME)
    assert status["host1"].live_sha256 == v1.onnx_sha256


def test_connection_cut_mid_upload_leaves_host_untouched(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2, size=4 * 1024 * 1024)
    host = host_factory(v1)
    target = make_target([host])
    cuts: list[int] = []

    def connect_and_cut_during_upload(target_spec, host_spec):
        connection = open_connection(target_spec, host_spec)
        original_put = connection.put

        def put(local, remote, progress=None):
            def on_progress(done: int, total: int) -> None:
                if not cuts and done >= total // 2:
                    cuts.append(host.server.cut_connections())

            original_put(local, remote, on_progress if local.suffix == ".onnx" else progress)

        connection.put = put
        return connection

    outcome = deploy(target, v2, "dep-cut", connect=connect_and_cut_during_upload)

    assert cuts and cuts[0] > 0, "the test never cut the connection"
    assert outcome.status == "failed", describe(outcome)
    assert "upload" in outcome.reason
    assert failed_steps(outcome.steps) == ["upload"]
    assert outcome.hosts["host1"].result == "untouched"
    host.assert_serves(v1)
    assert not (host.upload_dir / "dep-cut").exists(), "cleanup reconnects and removes the upload"


class StillLooksAlive:
    """A cut connection that goes on saying it is alive, as paramiko's does until its
    transport thread reads the EOF: the race behind the cut-mid-upload flake, made
    certain. Its commands die the way they do on that stale transport (fabric itself
    would quietly reconnect once the transport has noticed, which hides the race)."""

    def __init__(self, inner: SshConnection) -> None:
        self.inner = inner
        self.label = inner.label
        self.cut = False
        self.commands_on_the_cut: list[str] = []

    @property
    def is_alive(self) -> bool:
        return True

    def run(self, command: str, *, timeout: float):
        if self.cut:
            self.commands_on_the_cut.append(command)
            raise HostConnectionError(f"{self.label}: connection lost: Socket is closed")
        return self.inner.run(command, timeout=timeout)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_cleanup_on_a_cut_connection_that_looks_alive_retries_on_a_fresh_one(
    host_factory, make_target, models
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    opened: list[object] = []

    def connect_then_cut_after_the_model_upload(target_spec, host_spec):
        connection = open_connection(target_spec, host_spec)
        if opened:
            opened.append(connection)
            return connection  # the fresh one cleanup asks for: left alone
        stale = StillLooksAlive(connection)
        opened.append(stale)
        original_put = connection.put

        def put(local, remote, progress=None):
            original_put(local, remote, progress)
            if local.suffix == ".onnx":
                assert host.server.cut_connections() > 0
                stale.cut = True

        connection.put = put
        return stale

    outcome = deploy(target, v2, "dep-cut-alive", connect=connect_then_cut_after_the_model_upload)

    assert outcome.status == "failed", describe(outcome)
    assert failed_steps(outcome.steps) == ["upload"]
    stale = opened[0]
    assert isinstance(stale, StillLooksAlive)
    assert any("rm -rf" in c for c in stale.commands_on_the_cut), "cleanup tried the cut one"
    cleanup = next(r for r in outcome.steps if r.step == "cleanup")
    assert cleanup.ok, cleanup.detail
    assert "on a fresh connection" in cleanup.detail, cleanup.detail
    assert len(opened) == 2, "cleanup opened exactly one new connection"
    host.assert_serves(v1)
    assert not (host.upload_dir / "dep-cut-alive").exists(), "the upload folder was removed"


def test_file_corrupted_after_upload_is_refused(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])

    def connect_and_corrupt(target_spec, host_spec):
        connection = open_connection(target_spec, host_spec)
        original_put = connection.put

        def put(local, remote, progress=None):
            original_put(local, remote, progress)
            if remote.endswith(".onnx"):
                connection.run(f"printf 'x' >> {remote}", timeout=5)

        connection.put = put
        return connection

    outcome = deploy(target, v2, "dep-corrupt", connect=connect_and_corrupt)

    assert outcome.status == "failed", describe(outcome)
    assert failed_steps(outcome.steps) == ["verify"]
    assert "sha256 mismatch" in outcome.reason
    assert "swap" not in step_names(outcome.steps)
    host.assert_serves(v1)


def test_model_refused_by_engine_is_rolled_back(host_factory, make_target, models):
    v1 = models.make(1)
    refused = models.make(2, metadata_sha256="0" * 64)  # the engine's sha256 check fails
    host = host_factory(v1)
    target = make_target([host])

    outcome = deploy(target, refused, "dep-refused")

    assert outcome.status == "rolled_back", describe(outcome)
    assert "engine state is 'failed'" in outcome.reason
    assert "sha256" in outcome.reason
    assert failed_steps(outcome.steps) == ["health_check"]
    assert step_names(outcome.steps)[-4:] == [
        "rollback_swap",
        "rollback_restart",
        "rollback_health_check",
        "cleanup",
    ]
    assert "0" * 64 in next(r for r in outcome.steps if r.step == "health_check").log_excerpt
    assert outcome.hosts["host1"].result == "rolled_back"
    assert outcome.hosts["host1"].live_sha256 == v1.onnx_sha256
    assert outcome.hosts["host1"].log_tail  # the rollback's log tail is kept with the outcome
    host.assert_serves(v1)


def test_hanging_restart_times_out_then_rolls_back(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])  # the fake restart hangs for ever; the budget is the real one's
    (host.root / "hang-once").touch()

    outcome = deploy(target, v2, "dep-hang")

    assert outcome.status == "rolled_back", describe(outcome)
    restart = next(r for r in outcome.steps if r.step == "restart")
    timeout = target.command_timeout
    assert not restart.ok
    assert f"did not finish within {timeout:g} s" in restart.detail
    assert timeout <= restart.seconds < HANG_SECONDS, "killed at the timeout, not waited out"
    host.assert_serves(v1)


@pytest.mark.parametrize("case", ["unknown", "changed"])
def test_bad_host_key_is_refused_before_any_upload(
    host_factory, make_target, models, ssh_server_factory, case
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    if case == "unknown":
        other = ssh_server_factory()
        target = make_target([host], known_hosts_text=other.known_hosts_line())
    else:
        target = make_target([host])  # pins the current key ...
        host.server.new_host_key()  # ... then the host presents another one

    outcome = deploy(target, v2, "dep-key")

    assert outcome.status == "failed", describe(outcome)
    assert step_names(outcome.steps, "host1")[0] == "connect"
    assert "upload" not in step_names(outcome.steps)
    assert ("changed" if case == "changed" else "unknown host key") in outcome.reason
    assert not host.upload_dir.exists()
    host.assert_serves(v1)


def test_open_connection_raises_host_key_rejected(ssh_server_factory, ssh_user_key):
    server, other = ssh_server_factory(), ssh_server_factory()
    target = pinned_target(server, ssh_user_key, other.known_hosts_line())

    with pytest.raises(HostKeyRejected, match="unknown host key"):
        open_connection(target, target.hosts[0])


def test_invalid_known_hosts_line_is_named(ssh_server_factory, ssh_user_key):
    server = ssh_server_factory()
    target = pinned_target(server, ssh_user_key, "# pinned\n[127.0.0.1]:22 ssh-ed25519 !!!\n")

    with pytest.raises(HostKeyRejected, match="known_hosts_text line 2"):
        open_connection(target, target.hosts[0])


def test_two_hosts_second_failing_rolls_back_the_first(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    first, second = host_factory(v1), host_factory(v1)
    target = make_target([first, second], parallelism=1)
    (second.root / "fail-restart-once").touch()

    outcome = deploy(target, v2, "dep-two")

    assert outcome.status == "rolled_back", describe(outcome)
    assert outcome.reason.startswith("host2: restart failed")
    assert outcome.hosts["host1"].result == "rolled_back"
    assert outcome.hosts["host2"].result == "rolled_back"
    # the first host did switch to v2 and came back
    assert "health_check" in step_names(outcome.steps, "host1")
    assert "rollback_health_check" in step_names(outcome.steps, "host1")
    first.assert_serves(v1)
    second.assert_serves(v1)


def test_failed_rollback_is_reported_as_needing_attention(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    (host.root / "fail-restart").touch()  # every restart fails, the rollback's too

    outcome = deploy(target, v2, "dep-stuck")

    assert outcome.status == "needs_attention", describe(outcome)
    assert outcome.needs_attention
    assert "rollback FAILED on host1" in outcome.reason
    assert outcome.hosts["host1"].result == "rollback_failed"
    # the rollback's restart is tried 1 + rollback_retries times before giving up
    assert failed_steps(outcome.steps) == ["restart"] + ["rollback_restart"] * (
        1 + target.rollback_retries
    )
    # the previous files are back on disk even though no restart could prove it
    assert host.model_files()[f"{MODEL_NAME}.onnx"] == v1.onnx_sha256


def test_two_hosts_in_parallel_both_switch(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    first, second = host_factory(v1), host_factory(v1)
    target = make_target([first, second], parallelism=2)

    outcome = deploy(target, v2, "dep-par")

    assert outcome.status == "succeeded", describe(outcome)
    first.assert_serves(v2)
    second.assert_serves(v2)
    assert {h.live_sha256 for h in outcome.hosts.values()} == {v2.onnx_sha256}


def run_until_swap(target, host_spec, artifact, deployment_id: str) -> None:
    """What a worker killed right after the swap leaves behind."""
    connection = open_connection(target, host_spec)
    layout = target.layout_for(host_spec)
    try:
        report = steps.preflight(
            connection, layout, name=artifact.name, needed_bytes=0, min_free_bytes=0
        )
        candidate = steps.upload(
            connection, layout, artifact, deployment_id=deployment_id, timeout=5
        )
        steps.verify_upload(connection, artifact, candidate)
        names = model_filenames(artifact.name)
        staged = steps.stage(
            connection,
            layout,
            name=artifact.name,
            sources={
                "onnx": f"{candidate}/{names.onnx}",
                "metadata": f"{candidate}/{names.metadata}",
            },
            onnx_sha256=artifact.onnx_sha256,
            metadata_sha256=artifact.metadata_sha256,
            tag=deployment_id,
            timeout=5,
        )
        steps.backup_current(
            connection, layout, name=artifact.name, current=report.current, timeout=5
        )
        steps.swap(connection, staged, timeout=5)
    finally:
        connection.close()


def test_reconcile_after_worker_killed_after_swap_rolls_back(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    run_until_swap(target, host.spec, v2, "dep-killed")
    assert host.model_files()[f"{MODEL_NAME}.onnx"] == v2.onnx_sha256  # swapped, not restarted

    result = reconcile(
        target,
        name=MODEL_NAME,
        deployment_id="dep-killed",
        expected_new_sha=v2.onnx_sha256,
        previous_sha=v1.onnx_sha256,
    )

    assert result.result == "rolled_back", result.detail
    assert result.hosts["host1"]["onnx_sha256"] == v2.onnx_sha256  # what it found
    host.assert_serves(v1)
    assert not (host.upload_dir / "dep-killed").exists()


def test_reconcile_after_worker_killed_after_health_check_succeeds(
    host_factory, make_target, models
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    run_until_swap(target, host.spec, v2, "dep-late")
    host.restart()
    host.wait_until_serving(v2.onnx_sha256)

    result = reconcile(
        target,
        name=MODEL_NAME,
        deployment_id="dep-late",
        expected_new_sha=v2.onnx_sha256,
        previous_sha=v1.onnx_sha256,
    )

    assert result.result == "succeeded", result.detail
    host.assert_serves(v2)
    assert not (host.upload_dir / "dep-late").exists()


def test_reconcile_before_swap_reports_failed_and_untouched(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    connection = open_connection(target, host.spec)
    try:
        steps.upload(
            connection, target.layout_for(host.spec), v2, deployment_id="dep-early", timeout=5
        )
    finally:
        connection.close()

    result = reconcile(
        target,
        name=MODEL_NAME,
        deployment_id="dep-early",
        expected_new_sha=v2.onnx_sha256,
        previous_sha=v1.onnx_sha256,
    )

    assert result.result == "failed"
    assert "never went live" in result.detail
    host.assert_serves(v1)
    assert not (host.upload_dir / "dep-early").exists()


def test_staging_target_runs_engine_check_only_on_the_host(
    host_factory, make_target, models, check_only_command
):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host], environment="staging", check_command=check_only_command)

    outcome = deploy(target, v2, "dep-stage")

    assert outcome.status == "succeeded", describe(outcome)
    check = next(r for r in outcome.steps if r.step == "compatibility_check")
    assert check.ok
    assert check.data["report"]["ok"] is True
    assert all(item["ok"] for item in check.data["report"]["checks"])
    assert outcome.compatibility["host1"]["exit_code"] == 0
    host.assert_serves(v2)


def test_staging_check_refusal_leaves_host_untouched(
    host_factory, make_target, models, check_only_command
):
    v1 = models.make(1)
    refused = models.make(2, metadata_sha256="0" * 64)
    host = host_factory(v1)
    target = make_target([host], environment="staging", check_command=check_only_command)

    outcome = deploy(target, refused, "dep-stage-bad")

    assert outcome.status == "failed", describe(outcome)
    assert failed_steps(outcome.steps) == ["compatibility_check"]
    check = next(r for r in outcome.steps if r.step == "compatibility_check")
    assert "sha256" in check.detail and "0" * 64 in check.detail
    assert "swap" not in step_names(outcome.steps)
    host.assert_serves(v1)


def test_local_artifact_not_matching_registry_sha_is_refused(host_factory, make_target, models):
    v1, v2 = models.make(1), models.make(2)
    host = host_factory(v1)
    target = make_target([host])
    Path(v2.onnx_path).write_bytes(b"tampered")

    outcome = deploy(target, v2, "dep-local-bad")

    assert outcome.status == "failed", describe(outcome)
    assert step_names(outcome.steps) == ["verify_local"]
    host.assert_serves(v1)


def with_costs(artifact, fee_bps: float, policy_hash: str):
    """The artifact with a policy costs file, as the registry ships it."""
    document = {
        "model_name": artifact.name, "fee_bps": fee_bps, "slippage_bps": 5.0,
        "policy_id": 1, "policy_number": 1, "policy_label": "default", "policy_scope": "",
        "policy_hash": policy_hash,
    }  # fmt: skip
    return dataclasses.replace(artifact, costs_json=json.dumps(document, indent=2) + "\n")


def test_costs_file_is_swapped_kept_and_rolled_back_with_its_model(
    host_factory, make_target, models
):
    v1, v2 = with_costs(models.make(1), 11.0, "a" * 64), with_costs(models.make(2), 13.0, "b" * 64)
    host = host_factory(None)
    target = make_target([host])
    costs = model_filenames(MODEL_NAME).costs

    for number, artifact in enumerate((v1, v2), start=1):
        outcome = deploy(target, artifact, f"dep-{number}")
        assert outcome.status == "succeeded", describe(outcome)
        host.assert_serves(artifact)
        assert host.status()["costs"]["fee_bps"] == json.loads(artifact.costs_json)["fee_bps"]
    assert host.model_files()[costs + ".backup"] == v1.costs_sha256
    assert (host.root / "model-versions" / v1.onnx_sha256 / costs).read_text() == v1.costs_json
    state = read_status(target, name=MODEL_NAME)[host.spec.label].state
    assert state.costs_sha256 == v2.costs_sha256 and state.costs_problem is None

    back = rollback(target, name=MODEL_NAME, deployment_id="rb-costs")

    assert back.status == "succeeded", describe(back)
    host.assert_serves(v1)
    assert host.status()["costs"]["policy_hash"] == "a" * 64

    # A model shipped without costs does not inherit the previous model's.
    bare = models.make(3)
    assert deploy(target, bare, "dep-bare").status == "succeeded"
    host.assert_serves(bare)
    assert costs not in host.model_files()
    assert (host.status().get("costs") or {}).get("source") in ("engine defaults", None)


def test_a_costs_file_changed_in_transit_fails_the_verify(host_factory, make_target, models):
    v1 = with_costs(models.make(1), 11.0, "a" * 64)
    host = host_factory(None)
    forged = dataclasses.replace(v1, costs_json=v1.costs_json.replace("11.0", "0.0"))
    sha_claimed = v1.costs_sha256

    class Claimed(type(forged)):  # the registry's sha256 is the real file's, the bytes are not
        @property
        def costs_sha256(self):
            return sha_claimed

    outcome = deploy(make_target([host]), Claimed(**forged.__dict__), "dep-forged")

    assert outcome.status == "failed"
    assert "sha256 mismatch after upload" in outcome.reason and "_costs.json" in outcome.reason
    assert host.model_files() == {}
