"""Test hosts on this machine: throwaway OpenSSH servers on 127.0.0.1 and install roots
in temp folders with the engine running as the service (shared by the fixtures and
benchmarks/bench_deploy.py).

systemd is absent here, so a host's restart command is a small script that stops
the engine from its pid file and starts it again detached, and its log command
is `tail` of the engine's log file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from deployment.targets import ArtifactSpec, HostSpec, model_filenames
from tests.deployment.support import EngineSetup
from tests.support.budgets import budget

SSHD = Path("/usr/sbin/sshd")


# --------------------------------------------------------------------------- ssh servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class SshServer:
    directory: Path
    port: int
    authorized_key: Path
    pid: int | None = None
    # One sshd reached more ways (issue 26: a host written another way is the same host).
    extra_listen: tuple[str, ...] = ()
    extra_ports: tuple[int, ...] = ()

    @property
    def host_key(self) -> Path:
        return self.directory / "hostkey"

    def known_hosts_line(self, address: str = "127.0.0.1", port: int | None = None) -> str:
        key_type, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{address}]:{port or self.port} {key_type} {key}\n"

    def start(self) -> None:
        if not self.host_key.exists():
            keygen(self.host_key)
        authorized = self.directory / "authorized_keys"
        shutil.copy(self.authorized_key, authorized)
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        config = self.directory / "sshd_config"
        config.write_text(
            ""
            + "".join(f"Port {port}\n" for port in (self.port, *self.extra_ports))
            + "".join(f"ListenAddress {a}\n" for a in ("127.0.0.1", *self.extra_listen))
            + f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nUsePAM no\nPidFile {self.directory / 'sshd.pid'}\n"
            "Subsystem sftp internal-sftp\nMaxStartups 50\n"
            # bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is
            # nested; root's .bashrc on these machines runs `pyenv init` (0.1 s a command),
            # which would measure this machine rather than the deployment.
            "SetEnv SHLVL=1\n"
        )
        pid_file = self.directory / "sshd.pid"
        pid_file.unlink(missing_ok=True)
        subprocess.run(
            [str(SSHD), "-f", str(config), "-E", str(self.directory / "sshd.log")],
            check=True,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip() and self.accepts():
                self.pid = int(pid_file.read_text())
                return
            time.sleep(0.02)
        raise RuntimeError(f"sshd on port {self.port} did not start: {self.log()}")

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text() if path.exists() else ""

    def cut_connections(self) -> int:
        """Kill the per-connection sshd processes: every open session drops at once."""
        if self.pid is None:
            return 0
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return 0
        for child in children:
            # A session may end on its own between the listing and the kill.
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return len(children)

    def stop(self) -> None:
        if self.pid is None:
            return
        self.cut_connections()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self.pid = None

    def new_host_key(self) -> None:
        """Restart with a freshly generated host key (a changed or impostor host)."""
        self.stop()
        self.host_key.unlink()
        self.host_key.with_suffix(".pub").unlink()
        self.start()


# --------------------------------------------------------------------------- hosts

# A hanging restart hangs for ever as far as any test is concerned: only a timeout ends it.
HANG_SECONDS = 86_400

RESTART_SCRIPT = """#!/bin/sh
# Stand-in for `systemctl restart`: stop the engine from its pid file, start it detached.
ROOT={root}
if [ -f "$ROOT/hang-once" ]; then rm -f "$ROOT/hang-once"; exec sleep {hang_seconds}; fi
if [ -f "$ROOT/fail-restart-once" ]; then
  rm -f "$ROOT/fail-restart-once"; echo "restart refused (test)" >&2; exit 1
fi
if [ -f "$ROOT/fail-restart" ]; then echo "restart refused (test)" >&2; exit 1; fi
if [ -f "$ROOT/fail-restarts" ]; then
  n=$(cat "$ROOT/fail-restarts")
  if [ "$n" -gt 0 ]; then
    echo $((n - 1)) > "$ROOT/fail-restarts"; echo "restart refused (test, $n left)" >&2; exit 1
  fi
fi
if [ -f "$ROOT/var/engine.pid" ]; then
  pid=$(cat "$ROOT/var/engine.pid")
  kill "$pid" 2>/dev/null
  i=0
  while [ $i -lt 100 ]; do
    state=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = Z ]; then break; fi
    sleep 0.05; i=$((i+1))
  done
  kill -9 "$pid" 2>/dev/null
fi
cd "$ROOT"
{environment} setsid {command} >> "$ROOT/var/engine.log" 2>&1 < /dev/null &
echo $! > "$ROOT/var/engine.pid"
"""


STOP_SCRIPT = """#!/bin/sh
# Stand-in for `systemctl stop`: TERM the engine from its pid file, KILL it if it lingers.
# Stopping an engine that is not running succeeds, as systemctl stop does.
ROOT={root}
if [ -f "$ROOT/fail-stop" ]; then echo "stop refused (test)" >&2; exit 1; fi
if [ -f "$ROOT/var/engine.pid" ]; then
  pid=$(cat "$ROOT/var/engine.pid")
  kill "$pid" 2>/dev/null
  i=0
  while [ $i -lt 200 ]; do
    state=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = Z ]; then break; fi
    sleep 0.05; i=$((i+1))
  done
  kill -9 "$pid" 2>/dev/null
  rm -f "$ROOT/var/engine.pid"
fi
echo "stopped"
"""


@dataclass
class FakeHost:
    root: Path
    upload_dir: Path
    spec: HostSpec
    server: SshServer | None = None
    started_pids: list[int] = field(default_factory=list)

    @property
    def model_dir(self) -> Path:
        return self.root / "src" / "ml"

    @property
    def status_file(self) -> Path:
        return self.root / "var" / "status.json"

    @property
    def restart_script(self) -> Path:
        return self.root / "bin" / "restart.sh"

    @property
    def stop_script(self) -> Path:
        return self.root / "bin" / "stop.sh"

    def install(self, artifact: ArtifactSpec) -> None:
        """Put a model in place the way a first manual install would."""
        names = model_filenames(artifact.name)
        shutil.copy(artifact.onnx_path, self.model_dir / names.onnx)
        shutil.copy(artifact.metadata_path, self.model_dir / names.metadata)
        (self.model_dir / names.expected_sha).write_text(artifact.onnx_sha256 + "\n")
        if artifact.costs_json is not None:  # the policy costs, as a registry deploy leaves them
            (self.model_dir / names.costs).write_text(artifact.costs_json)

    def restart(self) -> None:
        subprocess.run(["/bin/sh", str(self.restart_script)], check=True, timeout=10)
        self.started_pids.append(int((self.root / "var" / "engine.pid").read_text()))

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def engine_pid(self) -> int | None:
        path = self.root / "var" / "engine.pid"
        return int(path.read_text()) if path.exists() else None

    def wait_until_serving(self, sha256: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("model_sha256") == sha256 and status.get("state") == "running":
                return
            time.sleep(0.05)
        raise AssertionError(f"engine on {self.spec.label} never served {sha256}: {status}")

    def model_files(self) -> dict[str, str]:
        """sha256 of each file in the model folder (temporary files included)."""
        return {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(self.model_dir.iterdir())
            if path.is_file()
        }

    def engine_alive(self) -> bool:
        pid = self.status().get("pid")
        if not isinstance(pid, int):
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def assert_serves(self, artifact: ArtifactSpec) -> None:
        """Exactly one complete model, `artifact`, on disk, and the running engine serves it."""
        names = model_filenames(artifact.name)
        files = self.model_files()
        live = {name for name in files if not name.endswith(".backup")}
        shipped = set(names.managed() if artifact.costs_json is not None else names.all())
        assert live == shipped, f"unexpected files in the model folder: {sorted(files)}"
        if artifact.costs_json is not None:
            assert files[names.costs] == artifact.costs_sha256
        assert files[names.onnx] == artifact.onnx_sha256
        assert files[names.metadata] == artifact.metadata_sha256
        expected = (self.model_dir / names.expected_sha).read_text().split()[0]
        assert expected == artifact.onnx_sha256
        status = self.status()
        assert status.get("model_sha256") == artifact.onnx_sha256, status
        assert status.get("state") == "running", status
        assert self.engine_alive(), f"engine pid {status.get('pid')} is not running"

    def stop_engine(self) -> None:
        engine_pid = self.engine_pid()
        for pid in {*self.started_pids, *([engine_pid] if engine_pid else [])}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def make_fake_host(
    root: Path,
    engine: EngineSetup,
    *,
    name: str,
    server: SshServer | None,
) -> FakeHost:
    """An install root under `root` with the restart script; no engine started yet."""
    spec = HostSpec(
        address="127.0.0.1" if server else "localhost",
        port=server.port if server else None,
        name=name,
        install_root=str(root / "opt"),
        upload_dir=str(root / "tmp" / "ai-trading-bot-staging"),
    )
    host = FakeHost(
        root=root / "opt",
        upload_dir=root / "tmp" / "ai-trading-bot-staging",
        spec=spec,
        server=server,
    )
    host.model_dir.mkdir(parents=True)
    (host.root / "var").mkdir()
    host.restart_script.parent.mkdir()
    command = engine.command(host.model_dir, host.status_file, host.root / "var" / "journal")
    host.restart_script.write_text(
        RESTART_SCRIPT.format(
            root=host.root,
            command=" ".join(shlex.quote(part) for part in command),
            environment=engine.environment(),
            hang_seconds=HANG_SECONDS,
        )
    )
    host.stop_script.write_text(STOP_SCRIPT.format(root=host.root))
    return host


def target_settings(hosts: list[FakeHost], user_key: Path | None) -> dict[str, Any]:
    """A target for fake hosts: restart script instead of systemd, tail instead of journalctl."""
    local = all(host.server is None for host in hosts)
    return {
        "name": "test-target",
        "hosts": [host.spec for host in hosts],
        "local": local,
        "ssh_user": "root",
        "ssh_key_path": None if local else str(user_key),
        "known_hosts_text": None
        if local
        else "".join(host.server.known_hosts_line() for host in hosts if host.server),
        "restart_command": "/bin/sh {install_root}/bin/restart.sh",
        "stop_command": "/bin/sh {install_root}/bin/stop.sh",
        "log_command": "tail -n 200 {install_root}/var/engine.log",
        "health_timeout": budget(30),
        "health_poll_interval": 0.05,
        "command_timeout": budget(5),
        "connect_timeout": budget(5),
        "keep_versions": 3,
        "min_free_bytes": 1024,
    }
