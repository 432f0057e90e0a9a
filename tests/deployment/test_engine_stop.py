"""deployment.service.engine_stop: a target's engine stopped on every host, host by host.

The registry calls it when a staged version is replaced, rejected or fails its forward
paper run. One host that refuses, times out or cannot be reached is reported in its own
result and never hides the others; stopping an engine that is not running succeeds."""

from __future__ import annotations

import dataclasses
import time

import psutil

from deployment.service import engine_stop
from deployment.targets import DEFAULT_STOP_COMMAND, HostSpec, TargetConfigError, TargetSpec
from tests.deployment.hosts import free_port
from tests.support.budgets import budget


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + budget(10)
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_every_host_is_stopped_and_each_failure_is_its_own_result(
    host_factory, make_target, models
):
    version = models.make(1)
    running, refusing = host_factory(version), host_factory(version)
    (refusing.root / "fail-stop").write_text("")
    down = HostSpec("127.0.0.1", port=free_port(), name="down")
    spec = make_target([running, refusing])
    spec = dataclasses.replace(spec, hosts=(*spec.hosts, down))
    pid, other = running.engine_pid(), refusing.engine_pid()
    assert pid is not None and other is not None

    results = engine_stop(spec)

    assert [(r.host, r.ok) for r in results] == [("host1", True), ("host2", False), ("down", False)]
    assert results[0].command == f"/bin/sh {running.root}/bin/stop.sh"
    assert results[0].detail == "stopped"
    assert _wait_gone(pid), "the engine of host1 is still running"
    assert results[1].detail == "exit 1: stop refused (test)"
    assert not _gone(other), "a refused stop left the engine running, as the host said"
    assert results[2].detail.startswith("unreachable: ")
    again = engine_stop(dataclasses.replace(spec, hosts=spec.hosts[:1]))
    assert [(r.host, r.ok, r.detail) for r in again] == [("host1", True, "stopped")]


def test_a_hanging_stop_is_a_timeout_result(host_factory, make_target, models):
    host = host_factory(None, ssh=False)
    host.stop_script.write_text("#!/bin/sh\nexec sleep 86400\n")
    spec = make_target([host])

    results = engine_stop(spec, timeout=1)

    assert [(r.host, r.ok, r.detail) for r in results] == [("host1", False, "timed out after 1 s")]


def test_the_stop_command_defaults_to_systemd_and_is_formatted_per_host():
    spec = TargetSpec(name="t", local=True, hosts=(HostSpec("localhost"),), service="bot-staging")
    assert spec.stop_command == DEFAULT_STOP_COMMAND
    assert spec.layout_for(spec.hosts[0]).stop_command == "sudo systemctl stop bot-staging"
    try:
        TargetSpec(name="t", local=True, hosts=(HostSpec("localhost"),), stop_command=" ")
    except TargetConfigError as exc:
        assert "stop_command is empty" in str(exc)
    else:
        raise AssertionError("an empty stop command was accepted")


def test_archiving_sets_the_paper_journals_aside_and_never_a_live_one(host_factory, make_target):
    host = host_factory(None, ssh=False)
    folder = host.root / "var" / "journal"
    folder.mkdir(parents=True)
    (folder / "btcusdt-paper.jsonl").write_text("the replaced version's paper run\n")
    (folder / "ethusdt-paper.jsonl").write_text("another paper run\n")
    (folder / "btcusdt-live.jsonl").write_text("a real position\n")
    (folder / "btcusdt-paper.20240101T000000Z.jsonl").write_text("an older archive\n")
    spec = make_target([host])

    (result,) = engine_stop(spec, archive_journals=True)

    assert (result.ok, result.detail) == (True, "stopped")
    assert len(result.archived) == 2
    names = sorted(p.name for p in folder.iterdir())
    assert "btcusdt-live.jsonl" in names and "btcusdt-paper.jsonl" not in names
    assert "ethusdt-paper.jsonl" not in names
    for name in result.archived:
        assert name in names and (folder / name).read_text().endswith("run\n")
    assert (folder / "btcusdt-paper.20240101T000000Z.jsonl").exists()
    (again,) = engine_stop(spec, archive_journals=True)
    assert (again.ok, again.archived) == (True, ()), "nothing left to set aside"
