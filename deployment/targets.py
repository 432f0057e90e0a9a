"""What a deployment acts on: the target and its hosts, and the artifact being shipped.

Plain dataclasses, no Django: the registry builds them from its own models and
hands them to `deployment.runner`. Defaults are the deployment guide's values.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Environment = Literal["staging", "production"]

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Artifact names and deployment ids end up in remote paths and shell commands:
# restrict them so no quoting mistake can ever turn one into something else.
SAFE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

DEFAULT_RESTART_COMMAND = "sudo systemctl restart {service}"
# Stopping a staged engine (replaced, rejected, or failed its forward paper run).
DEFAULT_STOP_COMMAND = "sudo systemctl stop {service}"
DEFAULT_LOG_COMMAND = "sudo journalctl -u {service} --since '{since}' --no-pager"


class TargetConfigError(ValueError):
    """A target or artifact description that cannot be deployed as written."""


@dataclass(frozen=True)
class HostSpec:
    """One machine of a target.

    `install_root` and `upload_dir` override the target's values for this host
    only (a host with a non-standard layout, or several "hosts" sharing one
    machine in tests).
    """

    address: str
    port: int | None = None
    name: str = ""
    install_root: str | None = None
    upload_dir: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.address}:{self.port}" if self.port else self.address


@dataclass(frozen=True)
class TargetSpec:
    """Where and how to deploy. Command templates take `{service}`, `{install_root}`,
    `{model_dir}`, `{status_file}`, `{name}` (the model the host runs) and (log command)
    `{since}`; the check command also takes `{candidate_dir}`, the uploaded files' folder."""

    name: str
    hosts: tuple[HostSpec, ...]
    environment: Environment = "production"
    local: bool = False
    ssh_user: str = "deploy"
    ssh_port: int = 22
    ssh_key_path: str | None = None
    known_hosts_path: str | None = None
    known_hosts_text: str | None = None
    install_root: str = "/opt/ai-trading-bot"
    model_dir: str = "src/ml"
    upload_dir: str = "/tmp/ai-trading-bot-staging"  # noqa: S108 - the guide's staging folder
    versions_dir: str = "model-versions"
    service: str = "ai-trading-bot"
    restart_command: str = DEFAULT_RESTART_COMMAND
    stop_command: str = DEFAULT_STOP_COMMAND
    log_command: str = DEFAULT_LOG_COMMAND
    status_file: str = "{install_root}/var/status.json"
    check_command: str | None = None
    health_timeout: float = 60.0
    health_poll_interval: float = 0.2
    # An engine is healthy only if its last candle arrived within its interval plus this.
    data_grace_seconds: float = 120.0
    command_timeout: float = 60.0
    # Restoring the previous version is the last line of defence: under load its restart
    # gets longer than a forward restart, and more than one try, before giving up.
    rollback_timeout: float = 180.0
    rollback_retries: int = 2
    connect_timeout: float = 10.0
    keep_versions: int = 5
    parallelism: int = 4
    min_free_bytes: int = 50 * 1024 * 1024

    def __post_init__(self) -> None:
        # Accept any sequence of hosts but store a tuple so the spec stays hashable.
        object.__setattr__(self, "hosts", tuple(self.hosts))
        self._validate()

    def _validate(self) -> None:
        problems = []
        if not self.name:
            problems.append("name is empty")
        if self.environment not in ("staging", "production"):
            problems.append(f"environment {self.environment!r} is not staging or production")
        if not self.hosts:
            problems.append("no hosts")
        labels = [host.label for host in self.hosts]
        if len(set(labels)) != len(labels):
            problems.append(f"duplicate hosts {labels}")
        if not self.local:
            if self.known_hosts_path is None and self.known_hosts_text is None:
                problems.append("an SSH target needs a pinned known_hosts (path or text)")
            if self.known_hosts_path is not None and not Path(self.known_hosts_path).is_file():
                problems.append(f"known_hosts_path {self.known_hosts_path} is not a file")
            if self.ssh_key_path is not None and not Path(self.ssh_key_path).is_file():
                problems.append(f"ssh_key_path {self.ssh_key_path} is not a file")
        for field_name in (
            "health_timeout",
            "command_timeout",
            "connect_timeout",
            "rollback_timeout",
            "data_grace_seconds",
        ):
            if getattr(self, field_name) <= 0:
                problems.append(f"{field_name} must be positive")
        if self.rollback_retries < 0:
            problems.append("rollback_retries must be 0 or more")
        if self.keep_versions < 1:
            problems.append("keep_versions must be at least 1")
        if self.parallelism < 1:
            problems.append("parallelism must be at least 1")
        if not self.restart_command.strip():
            problems.append("restart_command is empty")
        if not self.stop_command.strip():
            problems.append("stop_command is empty")
        if problems:
            raise TargetConfigError(f"target {self.name!r}: " + "; ".join(problems))

    def layout_for(self, host: HostSpec, name: str = "") -> HostLayout:
        """The absolute paths and ready-to-run commands for one host; `name` is the model
        the host runs (the `{name}` of the restart command: `--model {name}`)."""
        install_root = host.install_root or self.install_root
        model_dir = posixpath.join(install_root, self.model_dir)
        status_file = self.status_file.format(install_root=install_root)
        values = {
            "service": self.service,
            "install_root": install_root,
            "model_dir": model_dir,
            "status_file": status_file,
            "name": name,
        }
        return HostLayout(
            host=host,
            install_root=install_root,
            model_dir=model_dir,
            upload_dir=host.upload_dir or self.upload_dir,
            versions_dir=posixpath.join(install_root, self.versions_dir),
            status_file=status_file,
            restart_command=self.restart_command.format(**values),
            stop_command=self.stop_command.format(**values),
            log_command_template=self.log_command,
            check_command_template=self.check_command,
            template_values=values,
        )


@dataclass(frozen=True)
class HostLayout:
    """A target's settings resolved for one host: what the steps actually use."""

    host: HostSpec
    install_root: str
    model_dir: str
    upload_dir: str
    versions_dir: str
    status_file: str
    restart_command: str
    log_command_template: str
    check_command_template: str | None
    template_values: dict[str, str] = field(default_factory=dict)
    stop_command: str = ""

    def log_command(self, since: str) -> str:
        return self.log_command_template.format(since=since, **self.template_values)

    def check_command(self, candidate_dir: str, name: str) -> str | None:
        if self.check_command_template is None:
            return None
        values = {**self.template_values, "name": name}
        return self.check_command_template.format(candidate_dir=candidate_dir, **values)


@dataclass(frozen=True)
class ArtifactSpec:
    """The model files to ship, with the sha256 values the registry recorded.

    `name` is the file stem the engine reads (`btcusdt_sentiment` gives
    `btcusdt_sentiment.onnx` and `btcusdt_sentiment_metadata.json`).

    `costs_json` is the text of `<name>_costs.json`: the costs of the validation policy in
    force for the model, which the engine trades at. It travels with the model files
    (uploaded, sha-verified, swapped, kept and rolled back with them), so a host never
    runs a model at costs it was not shipped with. None ships no costs file and removes a
    previous one at the swap.
    """

    name: str
    version: int | None
    onnx_path: Path
    metadata_path: Path
    onnx_sha256: str
    metadata_sha256: str
    costs_json: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "onnx_path", Path(self.onnx_path))
        object.__setattr__(self, "metadata_path", Path(self.metadata_path))
        problems = []
        if not SAFE_NAME_PATTERN.match(self.name):
            problems.append(f"name {self.name!r} must match {SAFE_NAME_PATTERN.pattern}")
        for field_name in ("onnx_sha256", "metadata_sha256"):
            if not SHA256_PATTERN.match(getattr(self, field_name)):
                problems.append(f"{field_name} is not 64 lowercase hex digits")
        if self.costs_json is not None and not self.costs_json.endswith("\n"):
            problems.append("costs_json must end with a newline (it is written as a file)")
        if problems:
            raise TargetConfigError(f"artifact {self.name!r}: " + "; ".join(problems))

    @property
    def costs_sha256(self) -> str | None:
        if self.costs_json is None:
            return None
        return hashlib.sha256(self.costs_json.encode()).hexdigest()

    @classmethod
    def from_files(
        cls, *, name: str, version: int | None, onnx_path: Path, metadata_path: Path
    ) -> ArtifactSpec:
        """Build from files on disk, taking their sha256 as the expected values."""
        return cls(
            name=name,
            version=version,
            onnx_path=Path(onnx_path),
            metadata_path=Path(metadata_path),
            onnx_sha256=file_sha256(Path(onnx_path)),
            metadata_sha256=file_sha256(Path(metadata_path)),
        )

    @property
    def onnx_filename(self) -> str:
        return model_filenames(self.name).onnx

    @property
    def metadata_filename(self) -> str:
        return model_filenames(self.name).metadata

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.onnx_sha256[:12]})"


@dataclass(frozen=True)
class ModelFilenames:
    onnx: str
    metadata: str
    expected_sha: str
    # The policy costs shipped with the model (optional: a host installed by hand has none).
    costs: str = ""

    def all(self) -> tuple[str, str, str]:
        """The files every installed model has."""
        return (self.onnx, self.metadata, self.expected_sha)

    def managed(self) -> tuple[str, ...]:
        """Every file a deploy installs, backs up, swaps and removes together."""
        return (*self.all(), self.costs)


def model_filenames(name: str) -> ModelFilenames:
    """The file names the engine reads for a model name (docs/interfaces.md)."""
    return ModelFilenames(
        onnx=f"{name}.onnx",
        metadata=f"{name}_metadata.json",
        expected_sha=f"{name}.onnx.sha256",
        costs=f"{name}_costs.json",
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
