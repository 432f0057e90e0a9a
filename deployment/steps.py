"""One concern: the deployment steps on one host, each a plain function of a connection.

The deployment steps, each a plain function of a host connection.

The engine only ever reads `<model_dir>/<name>.onnx`, `<name>_metadata.json`,
`<name>.onnx.sha256` and `<name>_costs.json` (the policy costs shipped with the model).
Nothing here writes those names except `swap`, and `swap`
only renames complete, verified files that already sit in the model directory
(same filesystem, so each rename is atomic). Everything before `swap` leaves the
files the engine reads untouched.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deployment.connection import CommandResult, HostConnection, ProgressCallback
from deployment.identity import HOST_ID_FILENAME
from deployment.targets import (
    SAFE_NAME_PATTERN,
    SHA256_PATTERN,
    ArtifactSpec,
    HostLayout,
    model_filenames,
)

# Engine states that mean the new process will not come up healthy (engine/live/status.py).
FAILED_ENGINE_STATES = frozenset({"error", "failed", "stopped", "crashed"})
# The engine's state while its kill switch is latched: alive, trading nothing.
HALTED_STATE = "halted"
BACKUP_SUFFIX = ".backup"
LOG_TAIL_LINES = 40
# Small reads (sha256sum, cat status) get this instead of the target's long command timeout.
QUICK_COMMAND_TIMEOUT = 15.0


class StepFailed(Exception):
    """A step could not complete. `detail` says why, `log_excerpt` what the host said."""

    def __init__(self, detail: str, log_excerpt: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.log_excerpt = log_excerpt


@dataclass(frozen=True)
class EngineStatus:
    """The engine's status file as read from the host (None fields when absent)."""

    document: dict[str, Any] | None
    # Whether the pid in the document is a running (not zombie) process; None if unknown.
    alive: bool | None = None

    @property
    def model_sha256(self) -> str | None:
        return (self.document or {}).get("model_sha256")

    @property
    def state(self) -> str | None:
        return (self.document or {}).get("state")

    @property
    def pid(self) -> int | None:
        return (self.document or {}).get("pid")

    @property
    def instance(self) -> tuple[Any, Any]:
        """What tells one engine start from the next: its pid and start time."""
        document = self.document or {}
        return (document.get("pid"), document.get("started_at"))


@dataclass(frozen=True)
class HostState:
    """What one host really runs and holds, for status reports and reconciling."""

    host: str
    onnx_sha256: str | None
    metadata_sha256: str | None
    metadata_onnx_sha256: str | None
    metadata_version: Any
    expected_sha256: str | None
    backup_onnx_sha256: str | None
    backup_metadata_sha256: str | None
    status: EngineStatus
    stray_files: tuple[str, ...] = ()
    # Every model whose metadata sits in the model folder (a host runs exactly one).
    model_names: tuple[str, ...] = ()
    # What the kept `_metadata.json.backup` says its model's sha256 is.
    backup_metadata_onnx_sha256: str | None = None
    # The policy costs file shipped with the model (and its kept copy), as on disk.
    costs_sha256: str | None = None
    costs_document: Any = None
    backup_costs_sha256: str | None = None

    @property
    def engine_costs(self) -> dict[str, Any] | None:
        """The costs the running engine reports it trades at (engine/live/config.py)."""
        costs = (self.status.document or {}).get("costs")
        return costs if isinstance(costs, dict) and self.engine_alive else None

    @property
    def engine_alive(self) -> bool | None:
        return self.status.alive

    @property
    def live_sha256(self) -> str | None:
        """The sha256 the engine says it serves, only if that engine is still running."""
        return self.status.model_sha256 if self.engine_alive else None

    @property
    def serving_backup(self) -> bool:
        """The guide's manual rollback: the `.onnx.backup` copied over the model, so the
        model matches the kept previous metadata rather than the current one."""
        return (
            self.onnx_sha256 is not None
            and self.metadata_onnx_sha256 != self.onnx_sha256
            and self.backup_metadata_onnx_sha256 == self.onnx_sha256
        )

    @property
    def files_consistent(self) -> bool:
        """One complete model on disk: the metadata and the expected-sha file agree with it
        (or, after the guide's manual rollback, the kept previous metadata does)."""
        if self.onnx_sha256 is None:
            return False
        if self.serving_backup:
            return True
        if self.metadata_onnx_sha256 not in (None, self.onnx_sha256):
            return False
        return self.expected_sha256 in (None, self.onnx_sha256)

    @property
    def costs_problem(self) -> str | None:
        """Why the running engine does not trade at the costs shipped to this host."""
        if self.engine_alive is False or self.status.document is None:
            return None  # no engine running: nothing trades
        return costs_problem(self.costs_document, (self.status.document or {}).get("costs"))

    def other_models(self, name: str) -> list[str]:
        """Models other than `name` this host holds or its engine serves."""
        others = {found for found in self.model_names if found != name}
        served = (self.status.document or {}).get("model_name")
        if isinstance(served, str) and served != name and self.engine_alive is not False:
            others.add(served)
        return sorted(others)

    def serves(self, onnx_sha256: str | None) -> bool:
        """The files on disk and the running engine are both this version."""
        if onnx_sha256 is None:
            return self.onnx_sha256 is None
        return (
            self.files_consistent
            and self.onnx_sha256 == onnx_sha256
            and self.live_sha256 == onnx_sha256
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "live_sha256": self.live_sha256,
            "engine_state": self.status.state,
            "engine_alive": self.engine_alive,
            "onnx_sha256": self.onnx_sha256,
            "metadata_sha256": self.metadata_sha256,
            "metadata_version": self.metadata_version,
            "expected_sha256": self.expected_sha256,
            "backup_onnx_sha256": self.backup_onnx_sha256,
            "backup_metadata_onnx_sha256": self.backup_metadata_onnx_sha256,
            "serving_backup": self.serving_backup,
            "files_consistent": self.files_consistent,
            "model_names": list(self.model_names),
            "stray_files": list(self.stray_files),
            "costs_sha256": self.costs_sha256,
            "costs_file": self.costs_document,
            "backup_costs_sha256": self.backup_costs_sha256,
            "engine_costs": self.engine_costs,
            "costs_problem": self.costs_problem,
        }


@dataclass(frozen=True)
class PreflightReport:
    free_bytes: int
    current: HostState
    # What the host says it is (deployment/identity.py): its install root's real path
    # and the host id file under it ("" when the host could not say).
    real_root: str = ""
    host_id: str = ""


@dataclass(frozen=True)
class RestartMark:
    """What the host looked like just before a restart, to recognise the new engine."""

    since: str
    previous_instance: tuple[Any, Any]


@dataclass(frozen=True)
class HealthReport:
    status: dict[str, Any]
    log_tail: str
    seconds: float


@dataclass(frozen=True)
class StagedFiles:
    """Verified copies waiting in the model directory under temporary names."""

    incoming: Mapping[str, str] = field(default_factory=dict)  # final name -> temporary path
    # Live files the swap removes (a costs file the staged model was not shipped with).
    remove: tuple[str, ...] = ()


# --------------------------------------------------------------------------- helpers
#
# Every command is a round trip (about 0.15 s on a loaded loopback host), so each step
# sends one small script and parses its sections rather than many tiny commands.

SECTION_MARK = "@@section "


def q(value: str) -> str:
    return shlex.quote(value)


def run_checked(
    connection: HostConnection, command: str, *, timeout: float, what: str
) -> CommandResult:
    result = connection.run(command, timeout=timeout)
    if not result.ok:
        raise StepFailed(failure_sentence(what, result), command_log(result))
    return result


def failure_sentence(what: str, result: CommandResult) -> str:
    """One readable sentence: what failed and the host's last words (never the script)."""
    if result.timed_out:
        return f"{what} timed out on the host"
    output = (result.stderr.strip() or result.stdout.strip()).splitlines()
    said = output[-1][:300] if output else "no output"
    return f"{what} failed on the host (exit {result.exit_code}): {said}"


def command_log(result: CommandResult) -> str:
    """The remote command and what it printed, for the step's log (not its reason)."""
    return log_tail(
        f"$ {result.command}\n{result.stdout}\n{result.stderr}".rstrip(), LOG_TAIL_LINES * 2
    )


def sections_script(parts: Mapping[str, str]) -> str:
    """One script printing each part's output under a marker line (errors ignored:
    a missing file is an empty section, and the script as a whole succeeds)."""
    body = "; ".join(
        f"echo; echo '{SECTION_MARK}{name}'; {{ {command} ; }} 2>/dev/null"
        for name, command in parts.items()
    )
    return f"{{ {body}; true; }}"


def parse_sections(stdout: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(SECTION_MARK):
            current = sections.setdefault(line[len(SECTION_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}


def run_sections(
    connection: HostConnection,
    parts: Mapping[str, str],
    *,
    timeout: float = QUICK_COMMAND_TIMEOUT,
    what: str,
    prelude: str = "",
) -> dict[str, str]:
    """Run `prelude` (which must succeed) then print every part; returns the sections."""
    script = sections_script(parts)
    result = run_checked(
        connection, f"{prelude} && {script}" if prelude else script, timeout=timeout, what=what
    )
    return parse_sections(result.stdout)


def sha256_script(paths: list[str]) -> str:
    return "; ".join(f"if [ -f {q(path)} ]; then sha256sum {q(path)}; fi" for path in paths)


def parse_sha256sums(text: str, paths: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = dict.fromkeys(paths)
    for line in text.splitlines():
        digest, _, path = line.strip().partition("  ")
        if path in found and SHA256_PATTERN.match(digest):
            found[path] = digest
    return found


def sha256_of_files(
    connection: HostConnection, paths: list[str], *, timeout: float = QUICK_COMMAND_TIMEOUT
) -> dict[str, str | None]:
    """sha256 of each path on the host; None for a path that does not exist."""
    if not paths:
        return {}
    result = run_checked(connection, sha256_script(paths), timeout=timeout, what="sha256sum")
    return parse_sha256sums(result.stdout, paths)


def status_parts(layout: HostLayout) -> dict[str, str]:
    """Script parts printing the status file and the state of the pid it names."""
    status = q(layout.status_file)
    return {
        "status": f"cat {status}",
        # A zombie still has a /proc entry: report its state, not only its existence.
        "pid_state": (
            f"pid=$(grep -o '\"pid\": *[0-9]*' {status} | grep -o '[0-9]*$' | head -n 1); "
            '[ -n "$pid" ] && cut -d" " -f3 "/proc/$pid/stat"'
        ),
    }


def parse_engine_status(sections: Mapping[str, str]) -> EngineStatus:
    text = sections.get("status", "")
    if not text.strip():
        return EngineStatus(None)
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        # The engine writes atomically, so this is a foreign or damaged file: say so.
        return EngineStatus({"state": "unreadable", "detail": text[:200]}, None)
    if not isinstance(document, dict):
        return EngineStatus(None)
    pid_state = sections.get("pid_state", "").strip()
    alive = None if not isinstance(document.get("pid"), int) else pid_state not in ("", "Z")
    return EngineStatus(document, alive)


def read_engine_status(connection: HostConnection, layout: HostLayout) -> EngineStatus:
    return parse_engine_status(run_sections(connection, status_parts(layout), what="read status"))


def model_path(layout: HostLayout, filename: str) -> str:
    return posixpath.join(layout.model_dir, filename)


def candidate_dir_for(layout: HostLayout, deployment_id: str) -> str:
    check_deployment_id(deployment_id)
    return posixpath.join(layout.upload_dir, deployment_id)


def check_deployment_id(deployment_id: str) -> None:
    if not SAFE_NAME_PATTERN.match(deployment_id):
        raise ValueError(f"deployment id {deployment_id!r} must match {SAFE_NAME_PATTERN.pattern}")


def costs_fields(text: str | None) -> Any:
    """The costs file as read from a host: its JSON, or {"unreadable": ...} if damaged."""
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"unreadable": text[:200]}


def costs_problem(shipped: Any, engine: Any) -> str | None:
    """Why an engine's reported costs (its status `costs`) are not the shipped costs file's
    (None when they are, or when no costs file was shipped)."""
    if shipped is None:
        return None
    if not isinstance(shipped, dict) or "unreadable" in shipped:
        return "the costs file on the host is unreadable"
    if not isinstance(engine, dict):
        return "the engine does not report the costs it trades at"
    differences = [
        f"{key} {engine.get(key)!r} (shipped {shipped.get(key)!r})"
        for key in ("fee_bps", "slippage_bps")
        if not _same_number(engine.get(key), shipped.get(key))
    ]
    if engine.get("policy_hash") != shipped.get("policy_hash"):
        differences.append(
            f"policy {str(engine.get('policy_hash'))[:12]} "
            f"(shipped {str(shipped.get('policy_hash'))[:12]})"
        )
    if not differences:
        return None
    return "engine trades at " + ", ".join(differences) + ", not the shipped policy costs"


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return isinstance(a, numbers) and isinstance(b, numbers) and float(a) == float(b)


def metadata_fields(text: str | None) -> tuple[str | None, Any]:
    """(onnx_sha256, version) from a metadata document, tolerant of a damaged one."""
    if not text:
        return None, None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return "unreadable", None
    if not isinstance(document, dict):
        return "unreadable", None
    return document.get("onnx_sha256"), document.get("version")


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- host state


def host_state_parts(layout: HostLayout, name: str) -> dict[str, str]:
    names = model_filenames(name)
    return {
        "sha256": sha256_script(host_state_paths(layout, name)),
        "metadata": f"cat {q(model_path(layout, names.metadata))}",
        "expected": f"cat {q(model_path(layout, names.expected_sha))}",
        "backup_metadata": f"cat {q(model_path(layout, names.metadata + BACKUP_SUFFIX))}",
        "costs": f"head -c 4096 {q(model_path(layout, names.costs))}",
        "models": f"ls -1 {q(layout.model_dir)} | grep -E '^[^.].*_metadata[.]json$'",
        "stray": f"ls -A {q(layout.model_dir)} | grep -F .incoming-",
        **status_parts(layout),
    }


def host_state_paths(layout: HostLayout, name: str) -> list[str]:
    names = model_filenames(name)
    onnx = model_path(layout, names.onnx)
    metadata = model_path(layout, names.metadata)
    costs = model_path(layout, names.costs)
    return [
        onnx,
        metadata,
        onnx + BACKUP_SUFFIX,
        metadata + BACKUP_SUFFIX,
        costs,
        costs + BACKUP_SUFFIX,
    ]


def parse_host_state(
    label: str, layout: HostLayout, name: str, sections: Mapping[str, str]
) -> HostState:
    paths = host_state_paths(layout, name)
    onnx, metadata, backup_onnx, backup_metadata, costs, backup_costs = paths
    digests = parse_sha256sums(sections.get("sha256", ""), paths)
    metadata_sha_field, version = metadata_fields(sections.get("metadata"))
    expected_words = sections.get("expected", "").split()
    backup_metadata_sha, _ = metadata_fields(sections.get("backup_metadata"))
    model_names = tuple(
        line.strip().removesuffix("_metadata.json")
        for line in sections.get("models", "").splitlines()
        if line.strip()
    )
    return HostState(
        host=label,
        onnx_sha256=digests[onnx],
        metadata_sha256=digests[metadata],
        metadata_onnx_sha256=metadata_sha_field,
        metadata_version=version,
        expected_sha256=expected_words[0] if expected_words else None,
        backup_onnx_sha256=digests[backup_onnx],
        backup_metadata_sha256=digests[backup_metadata],
        status=parse_engine_status(sections),
        stray_files=tuple(sections.get("stray", "").split()),
        model_names=model_names,
        backup_metadata_onnx_sha256=backup_metadata_sha,
        costs_sha256=digests[costs],
        costs_document=costs_fields(sections.get("costs")),
        backup_costs_sha256=digests[backup_costs],
    )


def read_host_state(connection: HostConnection, layout: HostLayout, name: str) -> HostState:
    """The model files on disk, their backups, and what the engine reports as live."""
    sections = run_sections(connection, host_state_parts(layout, name), what="read host state")
    return parse_host_state(connection.label, layout, name, sections)


# --------------------------------------------------------------------------- steps


def preflight(
    connection: HostConnection,
    layout: HostLayout,
    *,
    name: str,
    needed_bytes: int,
    min_free_bytes: int,
    new_host_id: str = "",
) -> PreflightReport:
    """Free disk, writable folders, the model the host holds now, and what the host is:
    its install root's real path and host id (written now if the host has none)
    (one round trip)."""
    model_dir, upload_dir = q(layout.model_dir), q(layout.upload_dir)
    checks = (
        f"{{ test -d {model_dir} || {{ echo 'model directory {layout.model_dir} missing' >&2;"
        " exit 1; }; } && "
        f"{{ test -w {model_dir} || {{ echo 'model directory {layout.model_dir} not writable'"
        " >&2; exit 1; }; } && "
        f"mkdir -p {upload_dir} && test -w {upload_dir}"
    )
    sections = run_sections(
        connection,
        {
            "df": f"df -Pk {model_dir} {upload_dir}",
            **host_state_parts(layout, name),
            **identity_parts(layout, new_host_id),
        },
        what="preflight",
        prelude=checks,
    )
    current = parse_host_state(connection.label, layout, name, sections)
    refuse_halted_engine(connection.label, current)
    others = current.other_models(name)
    if others:
        # The engine runs one model. Installing a second name beside the first would make
        # the folder ambiguous, and neither the backup nor a rollback would cover the old
        # name: refuse before anything is uploaded.
        raise StepFailed(
            f"{connection.label} runs model {', '.join(others)}, not {name}: refusing to "
            f"deploy {name} onto it (a host runs one model; deploy {name} to a target of "
            f"its own, or switch the host by hand)"
        )
    free_bytes = parse_free_bytes(sections.get("df", ""))
    required = max(min_free_bytes, needed_bytes)
    if free_bytes < required:
        raise StepFailed(f"only {free_bytes} bytes free on the host, {required} needed")
    return PreflightReport(
        free_bytes=free_bytes,
        current=current,
        real_root=sections.get("real_root", "").strip(),
        host_id=sections.get("host_id", "").strip(),
    )


def identity_parts(layout: HostLayout, new_host_id: str) -> dict[str, str]:
    """Script parts printing the install root's real path and the host id file's uuid.

    The first deploy writes the id: a complete temporary file hard-linked onto the
    name, which fails if the name exists, so two first deploys at the same moment
    both read the one that won."""
    root = q(layout.install_root)
    id_file = q(posixpath.join(layout.install_root, HOST_ID_FILENAME))
    write = ""
    if new_host_id:
        temporary = q(posixpath.join(layout.install_root, f"{HOST_ID_FILENAME}.tmp"))
        write = (
            f'if [ ! -s {id_file} ]; then t={temporary}."$$"; '
            f'printf "%s\\n" {q(new_host_id)} > "$t" && ln "$t" {id_file}; rm -f "$t"; fi; '
        )
    return {
        "real_root": f"realpath -e {root} || (cd {root} && pwd -P)",
        "host_id": f"{write}head -c 100 {id_file}",
    }


def refuse_halted_engine(label: str, current: HostState) -> None:
    """An engine halted by its kill switch is not healthy: a deploy would restart it into
    the same latched halt and call that a success. Refuse before anything is sent."""
    document = current.status.document or {}
    if current.engine_alive is False:
        return
    if document.get("state") == HALTED_STATE or document.get("kill_switch") is True:
        raise StepFailed(
            f"the engine on {label} is halted by its kill switch: refusing to deploy onto it "
            "(look at why it latched, reset it with `python -m engine.live reset-kill-switch`, "
            "then deploy)"
        )


def parse_free_bytes(df_output: str) -> int:
    """The smallest 'Available' figure of `df -Pk` lines (both folders must fit the files)."""
    try:
        return min(int(line.split()[3]) * 1024 for line in df_output.splitlines()[1:] if line)
    except (IndexError, ValueError) as error:
        raise StepFailed(f"cannot read free space from df output: {df_output!r}") from error


def upload(
    connection: HostConnection,
    layout: HostLayout,
    artifact: ArtifactSpec,
    *,
    deployment_id: str,
    timeout: float,
    progress: ProgressCallback | None = None,
) -> str:
    """Copy the model and its metadata to `<upload_dir>/<deployment id>/`; returns that folder."""
    candidate = candidate_dir_for(layout, deployment_id)
    names = model_filenames(artifact.name)
    # The expected-sha file makes the upload folder a complete model folder, which is
    # what the engine's --check-only reads in the staging compatibility check.
    expected_sha_file = posixpath.join(candidate, names.expected_sha)
    # The costs file is a few hundred bytes of JSON: written by the same command (printf
    # '%s' copies its argument byte for byte), then sha-verified like the model files.
    costs = (
        ""
        if artifact.costs_json is None
        else f" && printf '%s' {q(artifact.costs_json)} > "
        f"{q(posixpath.join(candidate, names.costs))}"
    )
    run_checked(
        connection,
        f"rm -rf {q(candidate)} && mkdir -p {q(candidate)} && "
        f"printf '%s\\n' {q(artifact.onnx_sha256)} > {q(expected_sha_file)}{costs}",
        timeout=timeout,
        what="create upload folder",
    )
    connection.put(artifact.onnx_path, posixpath.join(candidate, names.onnx), progress)
    connection.put(artifact.metadata_path, posixpath.join(candidate, names.metadata))
    return candidate


def verify_upload(connection: HostConnection, artifact: ArtifactSpec, candidate: str) -> None:
    """The uploaded files' sha256, computed on the host, must equal the registry's."""
    names = model_filenames(artifact.name)
    expected = {
        posixpath.join(candidate, names.onnx): artifact.onnx_sha256,
        posixpath.join(candidate, names.metadata): artifact.metadata_sha256,
    }
    if artifact.costs_sha256 is not None:
        expected[posixpath.join(candidate, names.costs)] = artifact.costs_sha256
    verify_digests(sha256_of_files(connection, list(expected)), expected, where="upload")


def verify_digests(
    actual: Mapping[str, str | None], expected: Mapping[str, str | None], *, where: str
) -> None:
    wrong = [
        f"{path}: expected {want}, found {actual.get(path) or 'no file'}"
        for path, want in expected.items()
        if want is not None and actual.get(path) != want
    ]
    if wrong:
        raise StepFailed(f"sha256 mismatch after {where}: " + "; ".join(wrong))


def compatibility_check(
    connection: HostConnection, layout: HostLayout, *, name: str, candidate: str, timeout: float
) -> dict[str, Any]:
    """Run the engine's start-up checks (`--check-only`) on the uploaded files."""
    command = layout.check_command(candidate_dir=candidate, name=name)
    if command is None:
        return {"skipped": True}
    result = connection.run(command, timeout=timeout)
    report: dict[str, Any] = {"command": command, "exit_code": result.exit_code}
    try:
        report["report"] = json.loads(result.stdout)
    except json.JSONDecodeError:
        report["output"] = log_tail(result.stdout + result.stderr)
    if not result.ok:
        failed = failed_checks(report.get("report"))
        if failed:
            raise StepFailed(
                "engine start-up checks failed on the host: " + "; ".join(failed),
                command_log(result),
            )
        raise StepFailed(failure_sentence("engine start-up checks", result), command_log(result))
    return report


def failed_checks(report: Any) -> list[str]:
    """`name: detail` of each failed check in the engine's --check-only --json report."""
    checks = report.get("checks") if isinstance(report, dict) else None
    if not isinstance(checks, list):
        return []
    return [
        f"{check.get('name')}: {check.get('detail')}"
        for check in checks
        if isinstance(check, dict) and not check.get("ok")
    ]


def stage(
    connection: HostConnection,
    layout: HostLayout,
    *,
    name: str,
    sources: Mapping[str, str],
    onnx_sha256: str,
    metadata_sha256: str | None,
    tag: str,
    timeout: float,
    costs_sha256: str | None = None,
) -> StagedFiles:
    """Copy complete files into the model directory under temporary names and verify them.

    `sources` maps "onnx", "metadata" and, when the model was shipped with one, "costs"
    to paths on the host. The expected-sha file is written from `onnx_sha256`. Without a
    costs source the swap removes the live costs file: costs belong to the model they
    were shipped with. On failure the temporary files are removed.
    """
    check_deployment_id(tag)
    names = model_filenames(name)
    finals = names.managed() if "costs" in sources else names.all()
    incoming = {final: model_path(layout, f".{final}.incoming-{tag}") for final in finals}
    copy_costs = (
        [f"cp {q(sources['costs'])} {q(incoming[names.costs])}"] if "costs" in sources else []
    )
    copies = " && ".join(
        [
            f"cp {q(sources['onnx'])} {q(incoming[names.onnx])}",
            f"cp {q(sources['metadata'])} {q(incoming[names.metadata])}",
            *copy_costs,
            f"printf '%s\\n' {q(onnx_sha256)} > {q(incoming[names.expected_sha])}",
            # Data must be on disk before a rename makes it visible, or a crash could
            # leave a complete name pointing to incomplete content.
            f"sync {' '.join(q(path) for path in incoming.values())}",
        ]
    )
    staged = StagedFiles(
        incoming=incoming,
        remove=() if "costs" in sources else (model_path(layout, names.costs),),
    )
    wanted = {incoming[names.onnx]: onnx_sha256, incoming[names.metadata]: metadata_sha256}
    if "costs" in sources:
        wanted[incoming[names.costs]] = costs_sha256
    checked = list(wanted)
    try:
        result = run_checked(
            connection,
            f"{copies} && {sha256_script(checked)}",
            timeout=timeout,
            what="copy into model dir",
        )
        verify_digests(
            parse_sha256sums(result.stdout, checked),
            wanted,
            where="copy into the model directory",
        )
    except StepFailed:
        discard_staged(connection, staged)
        raise
    return staged


def discard_script(staged: StagedFiles) -> str:
    return "rm -f " + " ".join(q(path) for path in staged.incoming.values())


def discard_staged(connection: HostConnection, staged: StagedFiles) -> None:
    if staged.incoming:
        connection.run(discard_script(staged), timeout=QUICK_COMMAND_TIMEOUT)


def backup_current(
    connection: HostConnection,
    layout: HostLayout,
    *,
    name: str,
    current: HostState,
    timeout: float,
) -> str:
    """Keep the files in place now as `<file>.backup` (the guide's rollback copy) and
    in the versions folder under their sha256. Returns what was kept."""
    if current.onnx_sha256 is None:
        return "no current model to keep"
    names = model_filenames(name)
    commands = []
    for filename in names.managed():
        path = model_path(layout, filename)
        temporary = f"{path}{BACKUP_SUFFIX}.tmp"
        # Copy to a temporary name first, so a crash never leaves half a backup.
        commands.append(
            f"if [ -f {q(path)} ]; then cp -p {q(path)} {q(temporary)} && "
            f"mv -f {q(temporary)} {q(path + BACKUP_SUFFIX)}; "
            f"else rm -f {q(path + BACKUP_SUFFIX)}; fi"
        )
    commands.append(store_version_script(layout, name, current.onnx_sha256))
    run_checked(connection, " && ".join(commands), timeout=timeout, what="backup")
    return f"kept {current.onnx_sha256[:12]} as {BACKUP_SUFFIX} and in {layout.versions_dir}"


def store_version_script(layout: HostLayout, name: str, onnx_sha256: str) -> str:
    """Copy the live files into `<versions_dir>/<onnx sha256>/` unless already there.

    The costs file is refreshed in a kept version either way: the kept copy holds the
    costs that version last ran at, which a rollback to it restores."""
    names = model_filenames(name)
    target = posixpath.join(layout.versions_dir, onnx_sha256)
    temporary = f"{target}.tmp"
    copies = " && ".join(
        f"cp -p {q(model_path(layout, filename))} {q(temporary)}/"
        for filename in (names.onnx, names.metadata)
    )
    live_costs = q(model_path(layout, names.costs))
    kept_costs = q(posixpath.join(target, names.costs))
    refresh_costs = (
        f"if [ -f {live_costs} ]; then cp -p {live_costs} {kept_costs}.tmp && "
        f"mv -f {kept_costs}.tmp {kept_costs}; else rm -f {kept_costs}; fi"
    )
    return (
        f"mkdir -p {q(layout.versions_dir)} && if [ ! -d {q(target)} ]; then "
        f"rm -rf {q(temporary)} && mkdir {q(temporary)} && {copies} && "
        f"mv {q(temporary)} {q(target)}; else touch {q(target)}; fi && {refresh_costs}"
    )


def prune_versions_script(layout: HostLayout, *, keep: int, protect: set[str]) -> str:
    """Remove all but the `keep` most recently used versions (never the protected ones)."""
    excluded = " ".join(f"-e {q(sha)}" for sha in sorted(protect)) or "-e none"
    return (
        f"if [ -d {q(layout.versions_dir)} ]; then cd {q(layout.versions_dir)} && "
        "ls -1t | grep -E '^[0-9a-f]{64}$' | "
        f"tail -n +{keep + 1} | grep -v -x {excluded} | xargs -r rm -rf; fi"
    )


def swap(connection: HostConnection, staged: StagedFiles, *, timeout: float) -> None:
    """Rename the staged files onto the names the engine reads (atomic, same filesystem)."""
    renames = [
        f"mv -f {q(temporary)} {q(posixpath.join(posixpath.dirname(temporary), final))}"
        for final, temporary in staged.incoming.items()
    ]
    removals = [f"rm -f {' '.join(q(path) for path in staged.remove)}"] if staged.remove else []
    folder = posixpath.dirname(next(iter(staged.incoming.values())))
    # sync on the folder makes the renames themselves durable.
    run_checked(
        connection,
        " && ".join([*renames, *removals, f"sync {q(folder)}"]),
        timeout=timeout,
        what="swap",
    )


def remove_model_files(
    connection: HostConnection, layout: HostLayout, *, name: str, timeout: float
) -> None:
    """Used only when rolling back the first deployment a host ever had."""
    paths = " ".join(
        q(model_path(layout, filename)) for filename in model_filenames(name).managed()
    )
    run_checked(connection, f"rm -f {paths}", timeout=timeout, what="remove model files")


def restart(connection: HostConnection, layout: HostLayout, *, timeout: float) -> RestartMark:
    """Restart the service; the mark lets the health check tell the new engine from the old."""
    sections = run_sections(
        connection,
        # The host's local time, in the form journalctl's --since accepts.
        {"clock": "date '+%Y-%m-%d %H:%M:%S'", **status_parts(layout)},
        what="read status before restart",
    )
    mark = RestartMark(
        since=sections.get("clock", "").strip(),
        previous_instance=parse_engine_status(sections).instance,
    )
    result = connection.run(layout.restart_command, timeout=timeout)
    if result.timed_out:
        raise StepFailed(f"restart did not finish within {timeout:g} s", command_log(result))
    if not result.ok:
        raise StepFailed(failure_sentence("restart", result), command_log(result))
    return mark


def fetch_log(connection: HostConnection, layout: HostLayout, since: str) -> str:
    result = connection.run(layout.log_command(since), timeout=QUICK_COMMAND_TIMEOUT)
    return result.stdout if result.ok else ""


def loaded_line_pattern(name: str, onnx_sha256: str) -> re.Pattern[str]:
    return re.compile(
        rf"model loaded: {re.escape(name)} version=\S* sha256={re.escape(onnx_sha256)}\b"
    )


def health_check(
    connection: HostConnection,
    layout: HostLayout,
    *,
    name: str,
    onnx_sha256: str,
    mark: RestartMark,
    timeout: float,
    poll_interval: float,
    data_grace: float = 120.0,
) -> HealthReport:
    """Wait until a new engine reports `onnx_sha256`, logged its `model loaded` line, and
    has a fresh candle (within its interval plus `data_grace`)."""
    started = time.monotonic()
    deadline = started + timeout
    loaded = loaded_line_pattern(name, onnx_sha256)
    last_problem = "no status from a new engine yet"
    while True:
        status = read_engine_status(connection, layout)
        if status.document is not None and status.instance != mark.previous_instance:
            problem = engine_problem(status, onnx_sha256) or data_problem(status, data_grace)
            if problem is not None and problem.fatal:
                raise StepFailed(problem.text, log_tail(fetch_log(connection, layout, mark.since)))
            if problem is None:
                log = fetch_log(connection, layout, mark.since)
                if loaded.search(log):
                    return HealthReport(
                        status=status.document or {},
                        log_tail=log_tail(log),
                        seconds=time.monotonic() - started,
                    )
                last_problem = "engine reports the model but the log has no 'model loaded' line"
            else:
                last_problem = problem.text
        if time.monotonic() >= deadline:
            log = fetch_log(connection, layout, mark.since)
            raise StepFailed(
                f"health check timed out after {timeout:g} s: {last_problem}", log_tail(log)
            )
        time.sleep(poll_interval)


@dataclass(frozen=True)
class EngineProblem:
    text: str
    fatal: bool


def engine_problem(status: EngineStatus, onnx_sha256: str) -> EngineProblem | None:
    if status.state == HALTED_STATE or (status.document or {}).get("kill_switch") is True:
        return EngineProblem("engine is halted by its kill switch: not healthy", True)
    if status.state in FAILED_ENGINE_STATES:
        detail = (status.document or {}).get("detail", "")
        return EngineProblem(f"engine state is {status.state!r}: {detail}".rstrip(": "), True)
    if status.model_sha256 is not None and status.model_sha256 != onnx_sha256:
        return EngineProblem(
            f"engine serves sha256 {status.model_sha256}, expected {onnx_sha256}", True
        )
    if status.alive is False:
        return EngineProblem(f"engine process {status.pid} exited", True)
    if status.model_sha256 is None:
        return EngineProblem(f"engine state {status.state!r}, no model yet", False)
    return None


def data_problem(status: EngineStatus, grace: float) -> EngineProblem | None:
    """'running' is not healthy without market data: the engine's last candle must have
    arrived within its interval plus `grace`, both times by the engine's own clock."""
    document = status.document or {}
    received, heartbeat = document.get("last_data_at"), document.get("heartbeat_at")
    if received is None:
        return EngineProblem("engine is up but has received no candle (no market data)", False)
    try:
        age = (parse_time(heartbeat) - parse_time(received)).total_seconds()
        limit = float(document["interval_seconds"]) + grace
    except (KeyError, TypeError, ValueError):
        return EngineProblem(f"engine status has unreadable candle times: {received!r}", False)
    if age > limit:
        return EngineProblem(
            f"engine's last candle arrived {age:.0f} s ago, more than its interval plus "
            f"grace ({limit:.0f} s): no fresh market data",
            False,
        )
    return None


def parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"not a time: {value!r}")
    return datetime.fromisoformat(value)


def cleanup(
    connection: HostConnection,
    layout: HostLayout,
    *,
    candidate: str | None,
    staged: StagedFiles | None,
    keep_new: tuple[str, str] | None,
    keep_versions: int,
    protect: set[str],
    timeout: float,
    audit_anchor: str | None = None,
) -> str:
    """Remove the upload folder and temporary files; after a success keep the new
    version (`keep_new` = (name, sha256)) and prune old ones; write the registry's audit
    chain head (`audit_anchor`) to the host. One round trip."""
    commands = ["true"]
    if audit_anchor is not None:
        commands.append(write_anchor_script(layout, audit_anchor))
    if staged is not None and staged.incoming:
        commands.append(discard_script(staged))
    if candidate is not None:
        if posixpath.dirname(candidate.rstrip("/")) != layout.upload_dir.rstrip("/"):
            raise StepFailed(f"refusing to remove {candidate}: not inside {layout.upload_dir}")
        commands.append(f"rm -rf {q(candidate)}")
    if keep_new is not None:
        name, sha = keep_new
        commands.append(store_version_script(layout, name, sha))
        commands.append(prune_versions_script(layout, keep=keep_versions, protect=protect))
    run_checked(connection, " && ".join(commands), timeout=timeout, what="cleanup")
    return (
        "upload folder removed"
        + (f"; version {keep_new[1][:12]} kept" if keep_new else "")
        + (f"; audit chain head written to {anchor_path(layout)}" if audit_anchor else "")
    )


ANCHOR_FILENAME = "audit-anchor.json"
# Every head the host was ever given, one line each: appended, never rewritten, so a later
# write of a shorter (truncated) chain's head cannot erase what the host witnessed before.
ANCHOR_LOG_FILENAME = "audit-anchor.log"


def anchor_path(layout: HostLayout) -> str:
    return posixpath.join(layout.install_root, ANCHOR_FILENAME)


def anchor_log_path(layout: HostLayout) -> str:
    return posixpath.join(layout.install_root, ANCHOR_LOG_FILENAME)


def write_anchor_script(layout: HostLayout, anchor: str) -> str:
    """A copy of the registry's audit chain head on the host, outside the registry's
    database (verify_audit_log reads it back as a witness): the latest head written whole,
    then renamed, and appended to the host's log of heads."""
    if "\n" in anchor or "\r" in anchor:
        raise StepFailed("refusing to write an audit anchor of more than one line")
    path, log = anchor_path(layout), anchor_log_path(layout)
    return (
        f"printf '%s\\n' {q(anchor)} > {q(path + '.tmp')} && mv -f {q(path + '.tmp')} {q(path)}"
        f" && printf '%s\\n' {q(anchor)} >> {q(log)}"
    )


def remove_stray_incoming(connection: HostConnection, layout: HostLayout) -> None:
    """Remove temporary files a killed deployment left in the model directory."""
    connection.run(
        f"find {q(layout.model_dir)} -maxdepth 1 -name '.*.incoming-*' -type f -delete",
        timeout=QUICK_COMMAND_TIMEOUT,
    )
