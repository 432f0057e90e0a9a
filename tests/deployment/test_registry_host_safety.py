# ruff: noqa: F811 - the fixtures are imported from test_registry_deployments
"""Issue 26, the deployment side, against real OpenSSH hosts running the real engine and
real PostgreSQL:

- finding 1: a host reached through another spelling (another port of the same sshd, a
  symlinked install root, ``::1``) is the same machine: a staging deploy through it is
  refused at preflight naming both targets, and two targets deploying at the same moment
  to one machine never overlap (exactly one proceeds);
- finding 3: a storm of terminated database backends at every write of a deploy (inline
  and in a real Celery worker) ends with every step and the outcome recorded and the row
  terminal; a database that stays away leaves a journal that reconcile replays;
- finding 5: a target needing attention takes no deploy until a deployer acknowledges it
  after a host check shows it consistent (audited);
- finding 6: a halted engine is refused before upload and shown halted; the scheduled host
  check flags a model swapped behind the registry's back and mails the deployers.

Each ends with the five assertions (``assert_five``).
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from deployment.targets import ArtifactSpec
from engine.live.journal import Journal
from models_registry.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    FINISHED_DEPLOYMENT_STATUSES,
    AuditEvent,
    Deployment,
    DeploymentHost,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import attention, attention_checks, deployments
from models_registry.services.audit import verify_audit_chain
from models_registry.services.durable_writes import TERMINATE_ENV_VAR, DeploymentJournal
from models_registry.tasks.deploy import run_deployment
from models_registry.tasks.hosts import check_production_hosts
from tests.deployment.hosts import FakeHost, SshServer, free_port, make_fake_host
from tests.deployment.registry_support import describe, registry_files, ssh_target
from tests.deployment.support import EngineSetup
from tests.deployment.test_registry_deployments import (  # noqa: F401 - pytest fixtures
    baseline,
    fresh,
    media_root,
    people,
    versions,
)
from tests.registry.conftest import requires_postgresql

pytestmark = [requires_postgresql, pytest.mark.django_db(transaction=True)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def var_dir(settings: Any, tmp_path: Path) -> Path:
    """The deploy journals go to this test's own var folder."""
    folder = tmp_path / "var"
    folder.mkdir()
    settings.VAR_DIR = folder
    return folder


class Machine:
    """One real sshd (one host key) reachable on two ports and on 127.0.0.1 and ::1,
    running the real engine under one install root, plus a symlink to that root."""

    def __init__(self, host: FakeHost, server: SshServer, alias: Path) -> None:
        self.host, self.server, self.alias = host, server, alias

    @property
    def other_port(self) -> int:
        return self.server.extra_ports[0]

    def known_hosts(self) -> str:
        return "".join(
            self.server.known_hosts_line(address, port)
            for address in ("127.0.0.1", "::1", "localhost", "127.9.8.7")
            for port in (self.server.port, self.other_port)
        )


@pytest.fixture
def machine(
    tmp_path_factory: pytest.TempPathFactory,
    ssh_user_key: Path,
    engine: tuple[EngineSetup, Path | None],
) -> Iterator[Callable[[ArtifactSpec], Machine]]:
    made: list[Machine] = []

    def make(initial: ArtifactSpec) -> Machine:
        server = SshServer(
            directory=tmp_path_factory.mktemp("sshd"),
            port=free_port(),
            authorized_key=ssh_user_key.with_suffix(".pub"),
            extra_ports=(free_port(),),
            extra_listen=("::1", "127.9.8.7"),
        )
        server.start()
        folder = tmp_path_factory.mktemp("machine")
        host = make_fake_host(folder, engine[0], name="machine", server=server)
        alias = folder / "alias-of-opt"
        alias.symlink_to(host.root)
        host.install(initial)
        host.restart()
        host.wait_until_serving(initial.onnx_sha256)
        made.append(Machine(host, server, alias))
        return made[-1]

    yield make
    for each in made:
        each.host.stop_engine()
        each.server.stop()


def target_on(
    machine: Machine,
    name: str,
    environment: str,
    *,
    hostname: str = "127.0.0.1",
    port: int | None = None,
    root: str | None = None,
    user_key: Path,
) -> DeploymentTarget:
    target = ssh_target(name, environment, [], user_key, known_hosts=machine.known_hosts())
    DeploymentHost.objects.create(
        target=target,
        hostname=hostname,
        port=port or machine.server.port,
        install_root=root or str(machine.host.root),
        upload_dir=str(machine.host.upload_dir),
    )
    return target


def production_on(machine: Machine, user_key: Path) -> DeploymentTarget:
    return target_on(machine, "production-ssh", Environment.PRODUCTION, user_key=user_key)


def deploy_now(version: ModelVersion, target: DeploymentTarget, user: Any) -> Deployment:
    requested = deployments.deployment_request(
        model_version=version, target=target, requested_by=user
    )
    run_deployment(requested.pk)
    return fresh(requested)


# --------------------------------------------------------------------------- the five


def engines_on(host: FakeHost) -> list[int]:
    """Live engine processes serving this host's model folder (an orphan would be two)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if str(host.model_dir) in cmdline and "--model-dir" in cmdline:
            found.append(process.info["pid"])
    return found


def assert_five(served: list[tuple[FakeHost, ModelVersion]], *, halted: bool = False) -> None:
    """Every host serves exactly one complete model equal to the registry's; no run or
    deployment non-terminal; no duplicate version; the chain verifies (with the hosts'
    anchor copies); nothing written outside the store (no upload folder, no temporary)."""
    for host, version in served:
        files = registry_files(version)
        if halted:
            assert host.model_files()[f"{files.name}.onnx"] == files.onnx_sha256
            assert host.status().get("model_sha256") == files.onnx_sha256
        else:
            host.assert_serves(files)
        assert len(engines_on(host)) == 1, f"orphan engine: {engines_on(host)}"
        leftovers = list(host.upload_dir.iterdir()) if host.upload_dir.exists() else []
        assert leftovers == [], f"upload folder left behind: {leftovers}"
    assert not Deployment.objects.filter(status__in=ACTIVE_DEPLOYMENT_STATUSES).exists()
    for model in (ValidationRun, PaperTradingRun):
        assert not model.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()
    pairs = list(ModelVersion.objects.values_list("name", "version"))
    assert len(pairs) == len(set(pairs)), "duplicate version"
    anchors = [
        (host.spec.label, (host.root / "audit-anchor.json").read_text())
        for host, _ in served
        if (host.root / "audit-anchor.json").exists()
    ]
    report = verify_audit_chain(extra_anchors=anchors)
    assert report.ok, report


# --------------------------------------------------------------------------- finding 1

# Spellings of the production host that creation cannot know are one machine and root:
# another port of the same sshd, a symlink to its install root, IPv6 loopback.
SPELLINGS = {
    "other_port": lambda m: {"port": m.other_port},
    "symlinked_root": lambda m: {"root": str(m.alias)},
    "ipv6_loopback_other_port_dotdot_root": lambda m: {
        "hostname": "::1",
        "port": m.other_port,
        "root": f"{m.alias.parent}//./{m.alias.name}/../{m.host.root.name}/",
    },
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_staging_deploy_through_a_production_host_written_otherwise_is_refused(
    spelling: str, machine: Any, ssh_user_key: Path, versions: Any, people: Any
) -> None:
    deployer = people["deployer"]
    v1 = versions.make()
    host_machine = machine(registry_files(v1))
    production = production_on(host_machine, ssh_user_key)
    first = deploy_now(v1, production, deployer)
    assert first.status == DeploymentStatus.SUCCEEDED, describe(first)
    staging = target_on(
        host_machine,
        "staging-alias",
        Environment.STAGING,
        user_key=ssh_user_key,
        **SPELLINGS[spelling](host_machine),
    )
    candidate = versions.make(ModelState.VALIDATED)

    refused = deploy_now(candidate, staging, people["engineer"])  # an engineer's staging deploy

    assert refused.status == DeploymentStatus.FAILED, describe(refused)
    assert "production-ssh (production)" in refused.error, refused.error
    assert "staging-alias (staging)" in refused.error, refused.error
    assert "\n" not in refused.error and len(refused.error) < 600
    names = [step["name"] for step in refused.steps]
    assert "upload" not in names and names[-1] == "host_identity", describe(refused)
    assert fresh(candidate).state == ModelState.VALIDATED, "never staged"
    assert deployments.target_status(production)["consistent"] is True
    assert_five([(host_machine.host, v1)])


def test_two_targets_deploying_one_machine_at_the_same_moment_never_overlap(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any, baseline: Any
) -> None:
    deployer = people["deployer"]
    host_machine = machine(baseline)
    one = target_on(host_machine, "prod-one", Environment.PRODUCTION, user_key=ssh_user_key)
    two = target_on(
        host_machine,
        "prod-two",
        Environment.PRODUCTION,
        user_key=ssh_user_key,
        port=host_machine.other_port,
        root=str(host_machine.alias),
    )
    v_one, v_two = versions.make(), versions.make()
    requested = {
        target.name: deployments.deployment_request(
            model_version=version, target=target, requested_by=deployer
        )
        for target, version in ((one, v_one), (two, v_two))
    }
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(pk: int) -> None:
        try:
            start.wait()
            run_deployment(pk)
        except BaseException as error:  # reported below, never lost in the thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(d.pk,)) for d in requested.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    done = {name: fresh(d) for name, d in requested.items()}
    statuses = sorted(d.status for d in done.values())
    assert statuses == [DeploymentStatus.FAILED, DeploymentStatus.SUCCEEDED], [
        describe(d) for d in done.values()
    ]
    winner = next(d for d in done.values() if d.status == DeploymentStatus.SUCCEEDED)
    loser = next(d for d in done.values() if d.status == DeploymentStatus.FAILED)
    assert "being deployed by" in loser.error or "same machine and install root" in loser.error, (
        describe(loser)
    )
    assert "upload" not in [s["name"] for s in loser.steps], describe(loser)
    assert fresh(winner.model_version).state == ModelState.IN_PRODUCTION
    assert fresh(loser.model_version).state == ModelState.APPROVED
    assert deployments.target_status(winner.target)["consistent"] is True
    assert_five([(host_machine.host, winner.model_version)])


# --------------------------------------------------------------------------- finding 3


def assert_fully_recorded(done: Deployment) -> None:
    """Every step on the row once, each with its one audit event; one finishing event;
    the journal gone (all of it is in the database)."""
    ids = [step["record_id"] for step in done.steps]
    assert len(ids) == len(set(ids)), "a step recorded twice"
    events = AuditEvent.objects.filter(object_type="Deployment", object_id=str(done.pk))
    assert events.filter(event_type="deployment_step").count() == len(done.steps)
    assert events.filter(event_type="deploy_finished").count() == 1
    names = [step["name"] for step in done.steps]
    for step in ("verify_local", "connect", "preflight", "host_identity", "upload", "swap"):
        assert step in names, describe(done)
    assert names[-1] == "cleanup", describe(done)
    assert not DeploymentJournal(done.pk).exists()


def test_a_storm_of_terminated_backends_at_every_write_loses_nothing(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any, monkeypatch: Any
) -> None:
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    before = terminated_backends()
    monkeypatch.setenv(TERMINATE_ENV_VAR, "1")

    done = deploy_now(v2, production, deployer)

    monkeypatch.delenv(TERMINATE_ENV_VAR)
    assert terminated_backends() > before, "the storm did not happen"
    assert done.status == DeploymentStatus.SUCCEEDED, describe(done)
    assert_fully_recorded(done)
    assert fresh(v2).state == ModelState.IN_PRODUCTION
    assert fresh(v1).state == ModelState.RETIRED
    assert_five([(host_machine.host, v2)])


def terminated_backends() -> int:
    """Sessions this database has seen killed (PostgreSQL 14+ counts them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sessions_killed FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def test_a_database_that_stays_away_leaves_a_journal_reconcile_replays(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any, monkeypatch: Any, settings: Any
) -> None:
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    # Every write of a step or of the outcome fails, and is not retried: the database is
    # away for the whole deploy as far as the record is concerned.
    settings.TRADEBOT_DB_RETRY_ATTEMPTS = 1
    monkeypatch.setenv(TERMINATE_ENV_VAR, "record")

    left = deploy_now(v2, production, deployer)

    monkeypatch.delenv(TERMINATE_ENV_VAR)
    settings.TRADEBOT_DB_RETRY_ATTEMPTS = 6
    journal = DeploymentJournal(left.pk)
    assert left.status == DeploymentStatus.RUNNING and left.steps == [], describe(left)
    kept = journal.steps()
    assert [s["name"] for s in kept][-1] == "cleanup" and journal.finish() is not None
    host_machine.host.assert_serves(registry_files(v2))  # the host was fully deployed

    finished = deployments.reconcile_stale_deployments()  # no lease waited for

    done = fresh(left)
    assert [d.pk for d in finished] == [done.pk]
    assert done.status == DeploymentStatus.SUCCEEDED, describe(done)
    assert [s["record_id"] for s in done.steps] == [s["record_id"] for s in kept]
    assert_fully_recorded(done)
    assert fresh(v2).state == ModelState.IN_PRODUCTION
    assert deployments.reconcile_stale_deployments() == [], "replayed once"
    assert_five([(host_machine.host, v2)])


def test_a_storm_in_a_real_worker_ends_with_the_record_complete(
    machine: Any,
    ssh_user_key: Path,
    versions: Any,
    people: Any,
    media_root: Path,
    var_dir: Path,
    celery_worker_factory: Any,
) -> None:
    worker = celery_worker_factory(
        queues="deploy",
        env={
            "MEDIA_ROOT": str(media_root),
            "TRADEBOT_VAR_DIR": str(var_dir),
            TERMINATE_ENV_VAR: "1",
        },
        ready=False,
    )
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    before = terminated_backends()
    worker.wait_ready()

    requested = deployments.deployment_request(
        model_version=v2, target=production, requested_by=deployer
    )
    done = wait_finished(requested, worker)
    # The worker replays its journal into the database right after the outcome, then
    # removes it: wait for that (a condition, bounded), then check nothing is missing.
    deadline = time.monotonic() + 60
    while DeploymentJournal(done.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    done = fresh(done)

    assert terminated_backends() > before + 5, "the storm did not happen"
    assert done.status == DeploymentStatus.SUCCEEDED, describe(done)
    assert_fully_recorded(done)
    assert fresh(v2).state == ModelState.IN_PRODUCTION
    assert_five([(host_machine.host, v2)])


def wait_finished(deployment: Deployment, worker: Any, timeout: float = 240) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = fresh(deployment)
        if current.status in FINISHED_DEPLOYMENT_STATUSES:
            return current
        assert worker.poll() is None, Path(worker.log_path).read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"not finished: {describe(fresh(deployment))}")


# --------------------------------------------------------------------------- finding 5


def test_needs_attention_blocks_the_target_until_acknowledged_after_a_consistent_check(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any
) -> None:
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    host = host_machine.host
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    (host.root / "fail-restart").touch()  # the restart and every restore's restart refused
    broken = deploy_now(v2, production, deployer)
    assert broken.status == DeploymentStatus.NEEDS_ATTENTION, describe(broken)
    host.stop_engine()  # and the engine is gone: the host serves nothing

    with pytest.raises(attention.AttentionOpen) as blocked:
        deployments.deployment_request(model_version=v2, target=production, requested_by=deployer)
    assert "\n" not in str(blocked.value) and "acknowledge" in str(blocked.value)
    assert f"#{broken.pk}" in str(blocked.value)
    with pytest.raises(attention.AcknowledgeRefused, match="not consistent"):
        attention_checks.target_attention_acknowledge(
            target=production, acknowledged_by=deployer, comment="looked"
        )
    with pytest.raises(attention.AttentionOpen):
        deployments.deployment_request(model_version=v2, target=production, requested_by=deployer)
    with pytest.raises(attention.AttentionOpen):
        deployments.rollback_request(target=production, requested_by=deployer, comment="back")
    refusals = AuditEvent.objects.filter(event_type="target_attention_acknowledge_refused")
    assert refusals.count() == 1

    (host.root / "fail-restart").unlink()  # repaired by hand: v1 back and running
    host.restart()
    wait_for_new_engine(host, v1.onnx_sha256)
    out = io.StringIO()
    call_command(
        "acknowledge_attention", "--target", production.name, "--user", deployer.username,
        "--comment", "restart refusal fixed, v1 running", stdout=out,
    )  # fmt: skip
    assert "deploys accepted again" in out.getvalue()
    event = AuditEvent.objects.filter(event_type="target_attention_acknowledged").get()
    assert event.data["deployments"] == [broken.pk] and event.actor_id == deployer.pk
    assert deployments.unresolved_needs_attention(production) == []

    again = deploy_now(v2, production, deployer)
    assert again.status == DeploymentStatus.SUCCEEDED, describe(again)
    assert_five([(host, v2)])


# --------------------------------------------------------------------------- finding 6


def wait_for_new_engine(host: FakeHost, sha256: str, timeout: float = 30) -> None:
    """The engine just started (not the status a killed one left) serves `sha256`."""
    deadline = time.monotonic() + timeout
    while True:
        status = host.status()
        if (
            status.get("pid") == host.engine_pid()
            and status.get("model_sha256") == sha256
            and status.get("state") == "running"
        ):
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def latch_kill_switch(host: FakeHost) -> None:
    """What the engine does when its risk limit trips: the switch latched in its journal."""
    host.stop_engine()
    journals = sorted((host.root / "var" / "journal").glob("*.jsonl"))
    assert journals, "the engine keeps a journal"
    for path in journals:
        journal = Journal(path)
        try:
            journal.append("kill_switch", latched=True, reason="test: daily loss limit")
        finally:
            journal.close()
    host.restart()
    deadline = time.monotonic() + 30
    while host.status().get("state") != "halted":
        assert time.monotonic() < deadline, host.status()
        time.sleep(0.05)


def test_a_halted_engine_is_refused_before_upload_and_shown_halted(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any
) -> None:
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    host = host_machine.host
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    latch_kill_switch(host)

    out = io.StringIO()
    with pytest.raises(CommandError, match="HALTED"):
        call_command("deployment_status", "--target", production.name, stdout=out)
    assert "HALTED" in out.getvalue()
    report = deployments.target_status(production)
    assert report["consistent"] is False
    assert [h["halted"] for h in report["hosts"].values()] == [True]

    refused = deploy_now(v2, production, deployer)

    assert refused.status == DeploymentStatus.FAILED, describe(refused)
    assert "halted by its kill switch" in refused.error
    assert "upload" not in [s["name"] for s in refused.steps]
    assert fresh(v2).state == ModelState.APPROVED
    assert_five([(host, v1)], halted=True)


def test_the_beat_flags_a_model_swapped_behind_the_registry_and_blocks_the_target(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any
) -> None:
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    host = host_machine.host
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    assert check_production_hosts.apply().get() == [
        {"target": production.name, "problem": "", "flagged": None}
    ]
    host.install(registry_files(v2))  # by hand, behind the registry's back
    host.restart()
    host.wait_until_serving(v2.onnx_sha256)
    mail.outbox.clear()

    results = check_production_hosts.apply().get()

    assert results[0]["flagged"] is not None and "not serving" in results[0]["problem"]
    assert [m.subject for m in mail.outbox if "dora_deployer@example.test" in m.to] == [
        f"[tradebot] NEEDS ATTENTION: {production.name} does not serve the registry's version"
    ]
    assert check_production_hosts.apply().get()[0]["flagged"] is None, "raised once while open"
    raised = AuditEvent.objects.filter(event_type="target_attention_raised").get()
    assert raised.object_id == str(production.pk)
    with pytest.raises(attention.AttentionOpen, match="needs attention"):
        deployments.deployment_request(model_version=v2, target=production, requested_by=deployer)
    out = io.StringIO()
    with pytest.raises(CommandError, match="NEEDS ATTENTION"):
        call_command("deployment_status", "--target", production.name, stdout=out)
    assert "NEEDS ATTENTION: host check" in out.getvalue()

    host.install(registry_files(v1))  # put back
    host.restart()
    host.wait_until_serving(v1.onnx_sha256)
    # through the admin, as a deployer would: the action reads the hosts, then closes it
    client = Client()
    client.force_login(deployer)
    response = client.post(
        reverse("admin:models_registry_deploymenttarget_changelist"),
        {
            "action": "acknowledge_attention",
            "_selected_action": [str(production.pk)],
            "apply": "1",
            "comment": "v2 was copied by hand; removed",
        },
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"{production.name}: acknowledged; deploys accepted again"], shown
    assert attention.open_attention(production) == []
    assert_five([(host, v1)])
    assert os.environ.get(TERMINATE_ENV_VAR) is None


def test_a_deploy_holds_its_machine_against_every_other_target_until_it_ends(
    machine: Any,
    ssh_user_key: Path,
    versions: Any,
    people: Any,
    engine: tuple[EngineSetup, Path | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two roots on one machine, two production targets: while a deploy to one is running
    (held in its restart by the test), a deploy to the other is refused before upload;
    once the first has ended, the second goes. Not a race: the first is held."""
    deployer = people["deployer"]
    v1, v2 = versions.make(), versions.make()
    host_machine = machine(registry_files(v1))
    first_root = host_machine.host
    production = target_on(
        host_machine, "production-ssh", Environment.PRODUCTION, user_key=ssh_user_key
    )
    DeploymentTarget.objects.filter(pk=production.pk).update(command_timeout_seconds=120)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    second_root = make_fake_host(
        tmp_path_factory.mktemp("second-root"), engine[0], name="second",
        server=host_machine.server,
    )  # fmt: skip
    second_root.install(registry_files(v1))
    second_root.restart()
    second_root.wait_until_serving(v1.onnx_sha256)
    other = target_on(
        host_machine, "production-b", Environment.PRODUCTION, user_key=ssh_user_key,
        root=str(second_root.root),
    )  # fmt: skip
    DeploymentHost.objects.filter(target=other).update(upload_dir=str(second_root.upload_dir))
    (first_root.root / "hang-once").touch()  # the first deploy's restart hangs until released
    held = deployments.deployment_request(
        model_version=v2, target=production, requested_by=deployer
    )
    runner_thread = threading.Thread(target=lambda: (run_deployment(held.pk), connection.close()))
    runner_thread.start()
    try:
        wait_for_step(held, "swap")

        refused = deploy_now(v2, other, deployer)

        assert refused.status == DeploymentStatus.FAILED, describe(refused)
        assert f"being deployed by deployment #{held.pk} to target production-ssh" in (
            refused.error
        ), describe(refused)
        assert "upload" not in [s["name"] for s in refused.steps]
    finally:
        release_hanging_restart(host_machine.server)
        runner_thread.join(timeout=300)
    assert fresh(held).status == DeploymentStatus.ROLLED_BACK, describe(fresh(held))

    after = deploy_now(v2, other, deployer)

    assert after.status == DeploymentStatus.SUCCEEDED, describe(after)
    assert_five([(first_root, v1), (second_root, v2)])
    second_root.stop_engine()


def wait_for_step(deployment: Deployment, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while name not in [s["name"] for s in fresh(deployment).steps]:
        assert time.monotonic() < deadline, describe(fresh(deployment))
        time.sleep(0.1)


def release_hanging_restart(server: SshServer) -> None:
    """End the `sleep` a hanging restart runs in (a child of this test's own sshd only)."""
    assert server.pid is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sleeping = [
            child
            for child in psutil.Process(server.pid).children(recursive=True)
            if child.name() == "sleep"
        ]
        if sleeping:
            for child in sleeping:
                child.kill()
            return
        time.sleep(0.1)


def test_generated_spellings_of_a_production_host_are_refused_at_creation_or_preflight(
    machine: Any, ssh_user_key: Path, versions: Any, people: Any
) -> None:
    """Every way to write the production host (address: 127.0.0.1, ::1, localhost in any
    case; either sshd port; the root direct or through its symlink, with `.`, `..`, `//`
    and trailing slashes): a staging target on it is refused when it is created, or its
    deploy is refused at preflight naming both targets. Never an upload."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from models_registry.services import targets

    deployer, engineer = people["deployer"], people["engineer"]
    v1 = versions.make()
    host_machine = machine(registry_files(v1))
    production = production_on(host_machine, ssh_user_key)
    assert deploy_now(v1, production, deployer).status == DeploymentStatus.SUCCEEDED
    candidate = versions.make(ModelState.VALIDATED)
    root, alias = host_machine.host.root, host_machine.alias
    made = iter(range(1, 1000))

    @st.composite
    def spellings(draw: Any) -> dict[str, Any]:
        address = draw(st.sampled_from(["127.0.0.1", "::1", "localhost", "LOCALHOST", "127.9.8.7"]))
        port = draw(st.sampled_from([host_machine.server.port, host_machine.other_port]))
        start = draw(st.sampled_from([str(root), str(alias)]))
        detour = draw(st.sampled_from(["", "/.", "/src/..", "//var/../."]))
        return {
            "hostname": address,
            "port": port,
            "install_root": start + detour + draw(st.sampled_from(["", "/", "//"])),
        }

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @example(  # known only at preflight: the other port and the symlink
        {"hostname": "::1", "port": host_machine.other_port, "install_root": f"{alias}/./"}
    )
    @example(  # known at creation: loopback, same port, the root with a detour
        {
            "hostname": "LocalHost.",
            "port": host_machine.server.port,
            "install_root": f"{root}//src/..",
        }
    )
    @given(spellings())
    def attempt(spelled: dict[str, Any]) -> None:
        staging = ssh_target(
            f"staging-{next(made)}", Environment.STAGING, [], ssh_user_key,
            known_hosts=host_machine.known_hosts(),
        )  # fmt: skip
        try:
            targets.host_save(
                host=DeploymentHost(
                    target=staging, upload_dir=str(host_machine.host.upload_dir), **spelled
                ),
                actor=engineer,
            )
        except targets.TargetChangeRefused as refused_early:
            # the production host, or an earlier example's staging host spelled the same
            text = str(refused_early)
            assert "production-ssh (production)" in text or "(staging) as" in text, text
            outcomes.append("creation")
            return
        refused = deploy_now(candidate, staging, engineer)
        assert refused.status == DeploymentStatus.FAILED, describe(refused)
        assert "production-ssh (production)" in refused.error, (spelled, refused.error)
        assert "upload" not in [s["name"] for s in refused.steps]
        outcomes.append("preflight")

    outcomes: list[str] = []
    attempt()

    assert {"creation", "preflight"} <= set(outcomes), outcomes

    assert fresh(candidate).state == ModelState.VALIDATED
    assert_five([(host_machine.host, v1)])
