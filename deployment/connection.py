"""Connections to a host: Fabric over SSH with pinned host keys, or the local machine.

Both kinds offer the same small interface (`run`, `put`, `get`, `close`), so every
deployment step is written once and runs unchanged against a local target.
Every command has a timeout; a command that outlives it is killed on the host
(coreutils `timeout`) and reported as timed out rather than left running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import fabric
import paramiko
from invoke.exceptions import CommandTimedOut

from deployment.identity import key_fingerprint, local_fingerprint
from deployment.targets import HostSpec, TargetSpec

ProgressCallback = Callable[[int, int], None]

# Exit status of coreutils `timeout` when it had to stop the command (TERM, then KILL).
TIMEOUT_EXIT_CODES = frozenset({124, 137})
# Grace between the host-side timeout and the client-side one, so the host's
# `timeout` normally fires first and the channel closes cleanly.
CLIENT_TIMEOUT_MARGIN = 5.0
KILL_AFTER_SECONDS = 2


class HostConnectionError(RuntimeError):
    """The host could not be reached, or the connection broke."""


class HostKeyRejected(HostConnectionError):
    """The host's key is missing from, or differs from, the pinned known_hosts."""


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out: {self.command}"
        output = (self.stderr.strip() or self.stdout.strip())[-500:]
        return f"exit {self.exit_code}: {self.command}" + (f": {output}" if output else "")


class HostConnection(Protocol):
    label: str

    @property
    def is_alive(self) -> bool: ...

    def run(self, command: str, *, timeout: float) -> CommandResult: ...

    def put(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def close(self) -> None: ...


def open_connection(target: TargetSpec, host: HostSpec) -> HostConnection:
    """Open (and for SSH, authenticate) a connection to one host of the target."""
    if target.local:
        return LocalConnection(label=host.label)
    return SshConnection.open(target, host)


def with_host_timeout(command: str, timeout: float) -> str:
    """Wrap a shell command so the host itself kills it after `timeout` seconds."""
    seconds = max(1, round(timeout))
    return f"timeout -k {KILL_AFTER_SECONDS} {seconds} /bin/sh -c {shlex.quote(command)} </dev/null"


class SshConnection:
    """A Fabric connection that refuses any host key not in the pinned known_hosts."""

    def __init__(self, connection: fabric.Connection, label: str, command_timeout: float):
        self._connection = connection
        self.label = label
        self._command_timeout = command_timeout

    @classmethod
    def open(cls, target: TargetSpec, host: HostSpec) -> SshConnection:
        timeout = target.connect_timeout
        connect_kwargs: dict[str, object] = {
            "look_for_keys": False,
            "allow_agent": False,
            "timeout": timeout,
            "auth_timeout": timeout,
            "banner_timeout": timeout,
            "channel_timeout": timeout,
        }
        if target.ssh_key_path:
            connect_kwargs["key_filename"] = target.ssh_key_path
        # A user's ~/.ssh/config could redirect the host or add a ProxyCommand:
        # the target's settings are the whole truth, so do not read it.
        config = fabric.Config(lazy=True, overrides={"load_ssh_configs": False})
        connection = fabric.Connection(
            host.address,
            user=target.ssh_user,
            port=host.port or target.ssh_port,
            config=config,
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        # Fabric installs AutoAddPolicy; a deploy must never trust a key it has not been given.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        load_pinned_host_keys(client.get_host_keys(), target)
        try:
            connection.open()
        except paramiko.BadHostKeyException as error:
            raise HostKeyRejected(f"{host.label}: host key changed: {error}") from error
        except paramiko.SSHException as error:
            if "known_hosts" in str(error):
                raise HostKeyRejected(f"{host.label}: unknown host key: {error}") from error
            raise HostConnectionError(f"{host.label}: SSH failed: {error}") from error
        except (OSError, EOFError) as error:
            raise HostConnectionError(f"{host.label}: cannot connect: {error}") from error
        return cls(connection, host.label, target.command_timeout)

    def run(self, command: str, *, timeout: float) -> CommandResult:
        wrapped = with_host_timeout(command, timeout)
        try:
            result = self._connection.run(
                wrapped,
                hide=True,
                warn=True,
                in_stream=False,
                timeout=timeout + CLIENT_TIMEOUT_MARGIN,
            )
        except CommandTimedOut as error:
            return CommandResult(command, -1, error.result.stdout, error.result.stderr, True)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise HostConnectionError(f"{self.label}: connection lost: {error}") from error
        timed_out = result.exited in TIMEOUT_EXIT_CODES
        return CommandResult(command, result.exited, result.stdout, result.stderr, timed_out)

    def put(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> None:
        try:
            sftp = self._connection.sftp()
            # A stalled transfer must fail like a stalled command, not hang the worker.
            sftp.get_channel().settimeout(self._command_timeout)
            sftp.put(str(local), remote, callback=progress, confirm=True)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise HostConnectionError(
                f"{self.label}: upload of {local.name} failed: {error}"
            ) from (error)

    def get(self, remote: str, local: Path) -> None:
        try:
            sftp = self._connection.sftp()
            sftp.get_channel().settimeout(self._command_timeout)
            sftp.get(remote, str(local))
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise HostConnectionError(f"{self.label}: download of {remote} failed: {error}") from (
                error
            )

    @property
    def is_alive(self) -> bool:
        transport = self._connection.transport
        return transport is not None and transport.is_active()

    @property
    def host_key_fingerprint(self) -> str:
        """The SHA256 fingerprint of the key this host proved it holds (pinned, checked)."""
        transport = self._connection.transport
        if transport is None:
            raise HostConnectionError(f"{self.label}: not connected")
        return key_fingerprint(transport.get_remote_server_key().asbytes())

    def close(self) -> None:
        self._connection.close()


def load_pinned_host_keys(host_keys: paramiko.HostKeys, target: TargetSpec) -> None:
    """Load the target's pinned known_hosts (file or text) and nothing else."""
    if target.known_hosts_text is not None:
        source, text = "known_hosts_text", target.known_hosts_text
    else:
        assert target.known_hosts_path is not None  # TargetSpec validation guarantees one
        source = target.known_hosts_path
        text = Path(target.known_hosts_path).read_text()
    for line_number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno=line_number)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError) as error:
            raise HostKeyRejected(f"{source} line {line_number}: invalid entry: {error}") from error
        if entry is None:
            continue
        for hostname in entry.hostnames:
            host_keys.add(hostname, entry.key.get_name(), entry.key)


class LocalConnection:
    """The same interface on this machine: for a local target (the demo), no SSH."""

    def __init__(self, label: str = "local"):
        self.label = label

    def run(self, command: str, *, timeout: float) -> CommandResult:
        # A new session makes the command a process group we can kill whole on timeout;
        # anything it deliberately detaches (setsid) is left alone, like on a host.
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with_suppressed_lookup(lambda: os.killpg(process.pid, signal.SIGKILL))
            try:
                stdout, stderr = process.communicate(timeout=KILL_AFTER_SECONDS)
            except subprocess.TimeoutExpired:
                # A grandchild kept the pipes open: give up on its output, not on the timeout.
                process.kill()
                stdout, stderr = "", ""
            return CommandResult(command, -1, stdout or "", stderr or "", timed_out=True)
        return CommandResult(command, process.returncode, stdout, stderr)

    def put(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as error:
            raise HostConnectionError(f"{self.label}: copy of {local} failed: {error}") from error
        if progress is not None:
            size = Path(remote).stat().st_size
            progress(size, size)

    def get(self, remote: str, local: Path) -> None:
        try:
            shutil.copyfile(remote, local)
        except OSError as error:
            raise HostConnectionError(f"{self.label}: copy of {remote} failed: {error}") from error

    @property
    def is_alive(self) -> bool:
        return True

    @property
    def host_key_fingerprint(self) -> str:
        return local_fingerprint()

    def close(self) -> None:
        return None


def with_suppressed_lookup(action: Callable[[], None]) -> None:
    """Run a kill that may race with the process exiting by itself."""
    with contextlib.suppress(ProcessLookupError):
        action()
