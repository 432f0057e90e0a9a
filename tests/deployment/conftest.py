"""Fixtures for the deployment tests: throwaway OpenSSH servers on 127.0.0.1, "hosts"
(an install root in a temp folder with the engine running as the service), models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deployment.targets import ArtifactSpec, TargetSpec
from tests.deployment.hosts import (
    SSHD,
    FakeHost,
    SshServer,
    free_port,
    keygen,
    make_fake_host,
    target_settings,
)
from tests.deployment.support import EngineSetup, ModelFactory, engine_setup


@pytest.fixture(scope="session")
def ssh_user_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssh-user") / "userkey"
    keygen(path)
    return path


@pytest.fixture
def ssh_server_factory(
    tmp_path_factory: pytest.TempPathFactory, ssh_user_key: Path
) -> Iterator[Callable[[], SshServer]]:
    if not SSHD.exists():
        pytest.fail(f"{SSHD} not found: install openssh-server (.ci/run does)")
    servers: list[SshServer] = []

    def start() -> SshServer:
        server = SshServer(
            directory=tmp_path_factory.mktemp("sshd"),
            port=free_port(),
            authorized_key=ssh_user_key.with_suffix(".pub"),
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- engine, models


@pytest.fixture(scope="session")
def engine(
    shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EngineSetup, Path | None]:
    """The real engine with a tiny trained model; the stand-in only when asked for by name."""
    return engine_setup(shared_data_dir, tmp_path_factory)


@pytest.fixture
def models(tmp_path: Path, engine: tuple[EngineSetup, Path | None]) -> ModelFactory:
    directory = tmp_path / "registry-files"
    directory.mkdir()
    return ModelFactory(directory, base_dir=engine[1])


@pytest.fixture
def check_only_command(engine: tuple[EngineSetup, Path | None]) -> str:
    return engine[0].check_only_command()


# --------------------------------------------------------------------------- hosts


@pytest.fixture
def host_factory(
    tmp_path_factory: pytest.TempPathFactory,
    ssh_server_factory: Callable[[], SshServer],
    engine: tuple[EngineSetup, Path | None],
) -> Iterator[Callable[..., FakeHost]]:
    """Make a host (over SSH unless ssh=False) serving `initial` when given."""
    hosts: list[FakeHost] = []

    def make(initial: ArtifactSpec | None, *, ssh: bool = True) -> FakeHost:
        host = make_fake_host(
            tmp_path_factory.mktemp("host"),
            engine[0],
            name=f"host{len(hosts) + 1}",
            server=ssh_server_factory() if ssh else None,
        )
        hosts.append(host)
        if initial is not None:
            host.install(initial)
            host.restart()
            host.wait_until_serving(initial.onnx_sha256)
        return host

    yield make
    for host in hosts:
        host.stop_engine()


@pytest.fixture
def make_target(ssh_user_key: Path) -> Callable[..., TargetSpec]:
    def make(hosts: list[FakeHost], **overrides: Any) -> TargetSpec:
        return TargetSpec(**{**target_settings(hosts, ssh_user_key), **overrides})

    return make
