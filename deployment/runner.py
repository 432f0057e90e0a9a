"""One concern: running one deployment across a target's hosts, and undoing it when one fails.

Run the deployment steps on every host of a target, and undo them when one fails.

The registry decides *whether* to deploy; this module knows *how*. It takes plain
specs, reports every step through `on_step`, and returns an outcome the caller
records. It never raises for a failed deployment: failures are outcomes.

The order on each host:
  connect, preflight, upload, verify, [compatibility check], stage, backup
  -- nothing the engine reads has changed up to here --
  swap, restart, health check, cleanup

Hosts go through the first part in parallel; only when every host passed it does
any host swap. If a host then fails, every host that swapped is restored to its
previous files, restarted and checked, so a target never ends split.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from deployment import crash_points, steps
from deployment.connection import HostConnection, HostConnectionError, open_connection
from deployment.identity import HostClaimRefused, HostIdentity, new_host_id, same_place_pairs
from deployment.steps import HostState, StagedFiles, StepFailed
from deployment.targets import (
    ArtifactSpec,
    HostLayout,
    HostSpec,
    TargetSpec,
    file_sha256,
    model_filenames,
)
from deployment.windows import next_window_start, window_allows

__all__ = [
    "DeploymentOutcome",
    "HostOutcome",
    "HostStatusReport",
    "ReconcileOutcome",
    "StepRecord",
    "deploy",
    "next_window_start",
    "read_status",
    "reconcile",
    "rollback",
    "window_allows",
]

OutcomeStatus = Literal["succeeded", "failed", "rolled_back", "needs_attention"]
HostResult = Literal["succeeded", "untouched", "rolled_back", "rollback_failed", "failed"]
OperationKind = Literal["deploy", "rollback"]
Connect = Callable[[TargetSpec, HostSpec], HostConnection]
StepCallback = Callable[["StepRecord"], None]
# Called on the caller's thread once every host has said what it is, before anything is
# uploaded: raises HostClaimRefused to stop, returns what it claimed (a sentence).
ClaimHosts = Callable[[Mapping[str, HostIdentity]], str]
T = TypeVar("T")

log = logging.getLogger(__name__)

CONTROLLER = "controller"  # the "host" of steps that run where the deployment runs
CALLBACK_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class StepRecord:
    step: str
    host: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    detail: str
    log_excerpt: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "host": self.host,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "detail": self.detail,
            "log_excerpt": self.log_excerpt,
            "data": dict(self.data),
        }


@dataclass
class HostOutcome:
    host: str
    result: HostResult
    previous_sha256: str | None = None
    live_sha256: str | None = None
    reason: str = ""
    log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeploymentOutcome:
    deployment_id: str
    target: str
    operation: OperationKind
    status: OutcomeStatus
    onnx_sha256: str | None
    reason: str
    steps: list[StepRecord]
    hosts: dict[str, HostOutcome]
    started_at: datetime
    finished_at: datetime
    compatibility: dict[str, Any] = field(default_factory=dict)
    # True when a host may be in a state nobody verified (a rollback that failed):
    # someone must look before anything else is deployed there.
    needs_attention: bool = False

    @property
    def log_tail(self) -> str:
        return "\n".join(
            f"--- {label}\n{host.log_tail}" for label, host in self.hosts.items() if host.log_tail
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "target": self.target,
            "operation": self.operation,
            "status": self.status,
            "onnx_sha256": self.onnx_sha256,
            "reason": self.reason,
            "needs_attention": self.needs_attention,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "compatibility": self.compatibility,
            "hosts": {label: host.to_dict() for label, host in self.hosts.items()},
            "steps": [record.to_dict() for record in self.steps],
        }


@dataclass
class ReconcileOutcome:
    result: OutcomeStatus
    detail: str
    hosts: dict[str, dict[str, Any]]
    steps: list[StepRecord]
    needs_attention: bool = False


@dataclass(frozen=True)
class HostStatusReport:
    host: str
    state: HostState | None
    error: str | None = None

    @property
    def live_sha256(self) -> str | None:
        return self.state.live_sha256 if self.state else None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = self.state.to_dict() if self.state else {"host": self.host}
        document["error"] = self.error
        return document


# --------------------------------------------------------------------------- recording


class Recorder:
    """Times each step, records it, and hands it to the caller's callback.

    Steps run in one thread per host, but the callback is only ever called on the
    thread that created the recorder (the one that called deploy/rollback/reconcile),
    so it may use that thread's database connection. A callback that raises is
    logged and never changes the course of a deployment.
    """

    def __init__(self, on_step: StepCallback | None) -> None:
        self._on_step = on_step
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[StepRecord] = queue.SimpleQueue()
        self.records: list[StepRecord] = []
        self._delivered = 0
        self._delivered_changed = threading.Condition()

    def run(
        self,
        step: str,
        host: str,
        action: Callable[[], T],
        describe: Callable[[T], str] | str = "ok",
        log_of: Callable[[T], str] | None = None,
        data_of: Callable[[T], Mapping[str, Any]] | None = None,
    ) -> T:
        """Run one step; any failure is recorded and re-raised as StepFailed."""
        started = datetime.now(UTC)
        try:
            value = action()
        except StepFailed as error:
            self._record(step, host, started, False, error.detail, error.log_excerpt)
            raise
        except HostConnectionError as error:
            self._record(step, host, started, False, str(error))
            raise StepFailed(str(error)) from error
        except Exception as error:
            detail = f"unexpected {type(error).__name__}: {error}"
            self._record(step, host, started, False, detail)
            raise StepFailed(detail) from error
        detail = describe(value) if callable(describe) else describe
        log_excerpt = log_of(value) if log_of else ""
        data = data_of(value) if data_of else {}
        self._record(step, host, started, True, detail, log_excerpt, data)
        # Test-only (a no-op unless armed): kill -9 here, once the step is on record.
        crash_points.reached(f"step:{step}", before=self.wait_until_delivered)
        return value

    def _record(
        self,
        step: str,
        host: str,
        started: datetime,
        ok: bool,
        detail: str,
        log_excerpt: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        record = StepRecord(
            step=step,
            host=host,
            started_at=started,
            finished_at=datetime.now(UTC),
            ok=ok,
            detail=detail,
            log_excerpt=log_excerpt,
            data=dict(data or {}),
        )
        with self._lock:
            self.records.append(record)
        self._pending.put(record)
        if threading.get_ident() == self._owner:
            self.deliver_pending()

    def deliver_pending(self) -> None:
        """Hand the records made so far to the callback (on the owner thread only)."""
        while True:
            try:
                record = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                if self._on_step is not None:
                    self._on_step(record)
            except Exception:
                log.exception("on_step callback failed for %s on %s", record.step, record.host)
            with self._delivered_changed:
                self._delivered += 1
                self._delivered_changed.notify_all()

    def wait_until_delivered(self, timeout: float = 30) -> None:
        """Block until every record made so far reached the callback (the owner thread
        delivers them while it waits for the host threads)."""
        with self._lock:
            wanted = len(self.records)
        with self._delivered_changed:
            self._delivered_changed.wait_for(lambda: self._delivered >= wanted, timeout)

    def wait_for(self, futures: list[Future[None]]) -> None:
        """Wait for the host threads, delivering their records as they come."""
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=CALLBACK_POLL_SECONDS)
            self.deliver_pending()
        for future in futures:
            future.result()  # re-raise a thread's unexpected error here


# --------------------------------------------------------------------------- one host


@dataclass
class HostRun:
    """One host's progress through an operation."""

    host: HostSpec
    layout: HostLayout
    connection: HostConnection | None = None
    previous: HostState | None = None
    candidate: str | None = None
    staged: StagedFiles | None = None
    target_sha256: str | None = None
    swapped: bool = False
    failure: str | None = None
    log_tail: str = ""
    compatibility: dict[str, Any] | None = None
    identity: HostIdentity | None = None
    # Refused because the host is not this target's to touch: not even cleaned up.
    hands_off: bool = False

    @property
    def label(self) -> str:
        return self.host.label

    @property
    def previous_sha256(self) -> str | None:
        return self.previous.onnx_sha256 if self.previous else None


@dataclass(frozen=True)
class Sources:
    """Where on the host the files to install are, and what they must hash to."""

    paths: Mapping[str, str]  # "onnx" / "metadata" / "costs" (optional) -> path on the host
    onnx_sha256: str
    metadata_sha256: str | None
    costs_sha256: str | None = None


@dataclass
class OperationContext:
    """What every step of one deploy, rollback or reconcile shares."""

    kind: OperationKind
    target: TargetSpec
    name: str
    deployment_id: str
    recorder: Recorder
    connect: Connect
    prepare: Callable[[OperationContext, HostRun], Sources]
    needed_bytes: int = 0
    # The registry's audit chain head, written to every host at cleanup.
    audit_anchor: str | None = None
    claim_hosts: ClaimHosts | None = None

    def step(self, step: str, run: HostRun, action: Callable[[], T], **kwargs: Any) -> T:
        return self.recorder.run(step, run.label, action, **kwargs)

    def connection(self, run: HostRun) -> HostConnection:
        """The host's connection, reopened if a cut connection broke it."""
        if run.connection is None or not run.connection.is_alive:
            if run.connection is not None:
                close_quietly(run.connection)
            run.connection = self.connect(self.target, run.host)
        return run.connection


def close_quietly(connection: HostConnection) -> None:
    # Closing a connection that a cut already broke may fail; there is nothing left to do.
    with contextlib.suppress(Exception):
        connection.close()


def preflight_host(op: OperationContext, run: HostRun) -> None:
    """Connect and look: what the host holds and serves, and what machine it is."""
    target = op.target
    op.step(
        "connect",
        run,
        lambda: op.connection(run),
        describe=lambda _: (
            f"connected to {run.label}"
            + ("" if target.local else " (host key matches the pinned known_hosts)")
        ),
    )
    connection = op.connection(run)
    report = op.step(
        "preflight",
        run,
        lambda: steps.preflight(
            connection,
            run.layout,
            name=op.name,
            needed_bytes=op.needed_bytes,
            min_free_bytes=target.min_free_bytes,
            new_host_id=new_host_id(),
        ),
        describe=lambda r: (
            f"{r.free_bytes} bytes free; current model {r.current.onnx_sha256 or 'none'} "
            f"(engine serves {r.current.live_sha256 or 'nothing'})"
        ),
        data_of=lambda r: {
            "free_bytes": r.free_bytes,
            "current": r.current.to_dict(),
            "identity": identity_of(connection, r).to_dict(),
        },
    )
    run.previous = report.current
    run.identity = identity_of(connection, report)


def identity_of(connection: HostConnection, report: steps.PreflightReport) -> HostIdentity:
    return HostIdentity(
        fingerprint=getattr(connection, "host_key_fingerprint", ""),
        real_root=report.real_root,
        host_id=report.host_id,
    )


def claim_hosts(op: OperationContext, runs: list[HostRun]) -> None:
    """Between looking and touching: the target's hosts must be distinct machines and
    roots, and the caller (the registry) must grant them; otherwise no host is touched."""
    identities = {
        run.label: run.identity for run in runs if run.identity and run.identity.real_root
    }

    def check() -> str:
        pairs = same_place_pairs(identities)
        if pairs:
            a, b = pairs[0]
            raise StepFailed(
                f"hosts {a} and {b} of target {op.target.name} are one machine and install "
                f"root ({identities[a].describe()}): a deploy would install twice in one "
                "folder; remove one of them"
            )
        if op.claim_hosts is None:
            return f"{len(identities)} distinct host(s)"
        try:
            return op.claim_hosts(identities)
        except HostClaimRefused as refused:
            raise StepFailed(str(refused)) from refused

    if op.claim_hosts is None and len(identities) < 2:
        return
    try:
        op.recorder.run(
            "host_identity",
            CONTROLLER,
            check,
            describe=lambda text: text,
            data_of=lambda _: {label: identity.to_dict() for label, identity in identities.items()},
        )
    except StepFailed as error:
        for run in runs:
            run.failure = error.detail
            run.hands_off = True


def prepare_host(op: OperationContext, run: HostRun) -> None:
    """Everything before the swap. Leaves the files the engine reads untouched."""
    target = op.target
    connection = op.connection(run)
    assert run.previous is not None  # preflight_host ran first
    report_current = run.previous
    sources = op.prepare(op, run)
    run.target_sha256 = sources.onnx_sha256
    run.staged = op.step(
        "stage",
        run,
        lambda: steps.stage(
            connection,
            run.layout,
            name=op.name,
            sources=sources.paths,
            onnx_sha256=sources.onnx_sha256,
            metadata_sha256=sources.metadata_sha256,
            tag=op.deployment_id,
            timeout=target.command_timeout,
            costs_sha256=sources.costs_sha256,
        ),
        describe="complete copies verified in the model directory under temporary names",
    )
    previous = report_current
    op.step(
        "backup",
        run,
        lambda: steps.backup_current(
            connection,
            run.layout,
            name=op.name,
            current=previous,
            timeout=target.command_timeout,
        ),
        describe=lambda kept: kept,
    )


def prepare_upload(artifact: ArtifactSpec) -> Callable[[OperationContext, HostRun], Sources]:
    """Deploy (or roll back to) registry files: upload, verify on the host, check."""

    def prepare(op: OperationContext, run: HostRun) -> Sources:
        connection = op.connection(run)
        # Known before the upload starts, so a cut mid-upload can still be cleaned up.
        run.candidate = steps.candidate_dir_for(run.layout, op.deployment_id)
        op.step(
            "upload",
            run,
            lambda: steps.upload(
                connection,
                run.layout,
                artifact,
                deployment_id=op.deployment_id,
                timeout=op.target.command_timeout,
            ),
            describe=lambda folder: f"uploaded {artifact.label} to {folder}",
        )
        candidate = run.candidate
        op.step(
            "verify",
            run,
            lambda: steps.verify_upload(connection, artifact, candidate),
            describe=f"sha256 on the host matches the registry ({artifact.onnx_sha256[:12]})",
        )
        if run.layout.check_command_template is not None:
            run.compatibility = op.step(
                "compatibility_check",
                run,
                lambda: steps.compatibility_check(
                    connection,
                    run.layout,
                    name=artifact.name,
                    candidate=candidate,
                    timeout=op.target.command_timeout,
                ),
                describe="engine start-up checks passed on the host",
                data_of=lambda report: report,
            )
        names = model_filenames(artifact.name)
        paths = {
            "onnx": posixpath.join(candidate, names.onnx),
            "metadata": posixpath.join(candidate, names.metadata),
        }
        if artifact.costs_json is not None:
            paths["costs"] = posixpath.join(candidate, names.costs)
        return Sources(
            paths=paths,
            onnx_sha256=artifact.onnx_sha256,
            metadata_sha256=artifact.metadata_sha256,
            costs_sha256=artifact.costs_sha256,
        )

    return prepare


def prepare_from_host(onnx_sha256: str | None) -> Callable[[OperationContext, HostRun], Sources]:
    """Roll back to files already on the host: a kept version, or the `.backup` copy."""

    def prepare(op: OperationContext, run: HostRun) -> Sources:
        assert run.previous is not None  # preflight ran first
        wanted = onnx_sha256 or run.previous.backup_onnx_sha256

        def find() -> Sources:
            if wanted is None:
                raise StepFailed("no .backup model on the host to roll back to")
            return previous_sources(op.connection(run), run.layout, op.name, wanted)

        return op.step(
            "find_previous",
            run,
            find,
            describe=lambda found: (
                f"rolling back to {found.onnx_sha256[:12]} from {found.paths['onnx']}"
            ),
        )

    return prepare


def previous_sources(
    connection: HostConnection, layout: HostLayout, name: str, onnx_sha256: str
) -> Sources:
    """The host's own copy of a version: the kept-versions folder first, then `.backup`;
    with the costs file kept beside it, if that version ran with one."""
    names = model_filenames(name)
    kept = posixpath.join(layout.versions_dir, onnx_sha256)
    candidates = [
        (
            posixpath.join(kept, names.onnx),
            posixpath.join(kept, names.metadata),
            posixpath.join(kept, names.costs),
        ),
        (
            steps.model_path(layout, names.onnx + steps.BACKUP_SUFFIX),
            steps.model_path(layout, names.metadata + steps.BACKUP_SUFFIX),
            steps.model_path(layout, names.costs + steps.BACKUP_SUFFIX),
        ),
    ]
    digests = steps.sha256_of_files(
        connection, [path for onnx, _, costs in candidates for path in (onnx, costs)]
    )
    for onnx, metadata, costs in candidates:
        if digests[onnx] == onnx_sha256:
            costs_sha256 = digests[costs]
            paths = {"onnx": onnx, "metadata": metadata}
            if costs_sha256 is not None:
                paths["costs"] = costs
            return Sources(
                paths=paths,
                onnx_sha256=onnx_sha256,
                metadata_sha256=None,
                costs_sha256=costs_sha256,
            )
    raise StepFailed(f"version {onnx_sha256[:12]} is neither kept in {kept} nor the .backup copy")


def switch_host(op: OperationContext, run: HostRun, onnx_sha256: str) -> None:
    """Swap, restart, health check. After the swap the host must be restored on failure."""
    connection = op.connection(run)
    staged = run.staged
    assert staged is not None
    run.swapped = True  # set before the renames: a half-done swap must be undone too
    op.step(
        "swap",
        run,
        lambda: steps.swap(connection, staged, timeout=op.target.command_timeout),
        describe=f"model files replaced in {run.layout.model_dir}",
    )
    restart_and_check(op, run, onnx_sha256, prefix="")


def restart_and_check(op: OperationContext, run: HostRun, onnx_sha256: str, *, prefix: str) -> None:
    """Restart and wait for a healthy engine serving `onnx_sha256`. Restoring the previous
    version (prefix "rollback_") gets the target's longer timeout and its retries."""
    restoring = prefix == "rollback_"
    attempts = 1 + (op.target.rollback_retries if restoring else 0)
    timeout = op.target.rollback_timeout if restoring else op.target.command_timeout
    for attempt in range(1, attempts + 1):
        suffix = f" (attempt {attempt} of {attempts})" if attempts > 1 else ""
        try:
            restart_once(op, run, onnx_sha256, prefix=prefix, timeout=timeout, suffix=suffix)
            return
        except StepFailed:
            if attempt == attempts:
                raise


def restart_once(
    op: OperationContext,
    run: HostRun,
    onnx_sha256: str,
    *,
    prefix: str,
    timeout: float,
    suffix: str,
) -> None:
    connection = op.connection(run)
    mark = op.step(
        f"{prefix}restart",
        run,
        lambda: steps.restart(connection, run.layout, timeout=timeout),
        describe=f"ran {run.layout.restart_command}{suffix}",
    )
    try:
        report = op.step(
            f"{prefix}health_check",
            run,
            lambda: steps.health_check(
                connection,
                run.layout,
                name=op.name,
                onnx_sha256=onnx_sha256,
                mark=mark,
                timeout=op.target.health_timeout,
                poll_interval=op.target.health_poll_interval,
                data_grace=op.target.data_grace_seconds,
            ),
            describe=lambda r: (
                f"engine serves {onnx_sha256[:12]} with fresh candles "
                f"({r.seconds:.1f} s after restart){suffix}"
            ),
            log_of=lambda r: r.log_tail,
            data_of=lambda r: {"status": r.status},
        )
    except StepFailed as error:
        run.log_tail = error.log_excerpt
        raise
    run.log_tail = report.log_tail


def restore_host(op: OperationContext, run: HostRun) -> bool:
    """Put the previous files back, restart, and check the previous sha256 is live."""
    previous = run.previous
    try:
        connection = op.step("rollback_connect", run, lambda: op.connection(run), describe="ok")
        if previous is None or previous.onnx_sha256 is None:
            if previous is not None and previous.live_sha256 is not None:
                # An engine ran before but its files are not the ones this deployment
                # replaced: removing the new files cannot bring it back.
                return False
            op.step(
                "rollback_restore",
                run,
                lambda: steps.remove_model_files(
                    connection, run.layout, name=op.name, timeout=op.target.command_timeout
                ),
                describe="no previous model: removed the new files",
            )
            return True
        previous_sha = previous.onnx_sha256

        def stage_previous() -> StagedFiles:
            found = previous_sources(connection, run.layout, op.name, previous_sha)
            if previous.costs_sha256 is not None and "costs" not in found.paths:
                raise StepFailed(
                    f"the costs file {previous_sha[:12]} ran with is not kept on the host: "
                    "restoring the model without it would trade at other costs"
                )
            return steps.stage(
                connection,
                run.layout,
                name=op.name,
                sources=found.paths,
                onnx_sha256=previous_sha,
                metadata_sha256=previous.metadata_sha256,
                tag=f"{op.deployment_id}-restore",
                timeout=op.target.command_timeout,
                # What ran before this deployment (its preflight), else the kept copy's.
                costs_sha256=previous.costs_sha256 or found.costs_sha256,
            )

        staged = op.step(
            "rollback_stage",
            run,
            stage_previous,
            describe=f"previous files {previous_sha[:12]} verified and staged",
        )
        op.step(
            "rollback_swap",
            run,
            lambda: steps.swap(connection, staged, timeout=op.target.command_timeout),
            describe="previous files back in place",
        )
        restart_and_check(op, run, previous_sha, prefix="rollback_")
    except StepFailed:
        return False
    return True


def clean_host(op: OperationContext, run: HostRun, *, keep_new: str | None) -> None:
    """Remove the upload folder and leftovers; after a success keep the new version."""

    def clean(connection: HostConnection) -> str:
        return steps.cleanup(
            connection,
            run.layout,
            candidate=run.candidate,
            staged=run.staged,
            keep_new=(op.name, keep_new) if keep_new else None,
            keep_versions=op.target.keep_versions,
            protect={sha for sha in (keep_new, run.previous_sha256) if sha},
            timeout=op.target.command_timeout,
            audit_anchor=op.audit_anchor,
        )

    # Leftovers in the upload folder do not change what the host serves: recorded, not fatal.
    with contextlib.suppress(StepFailed):
        op.step(
            "cleanup",
            run,
            lambda: on_fresh_connection_if_failed(op, run, clean),
            describe=lambda text: text,
        )


def on_fresh_connection_if_failed(
    op: OperationContext, run: HostRun, action: Callable[[HostConnection], str]
) -> str:
    """Run `action` on the host's connection; if it fails there, once more on a new one.

    A connection cut a moment ago can still look alive (paramiko sees the EOF only
    when its transport thread next reads), so `op.connection` hands it back and the
    command dies on it. Cleanup is idempotent, so one retry on a fresh connection is
    safe, and it is what tells a cut connection from a host that really refuses.
    Returns what the action said, noting the retry.
    """
    try:
        return action(op.connection(run))
    except (StepFailed, HostConnectionError) as error:
        first = error.detail if isinstance(error, StepFailed) else str(error)
        if run.connection is not None:
            close_quietly(run.connection)
            run.connection = None
        said = action(op.connection(run))
        return f"{said} (on a fresh connection: the first attempt failed: {first})"


# --------------------------------------------------------------------------- the operation


def in_parallel(
    op: OperationContext, runs: Iterable[HostRun], action: Callable[[HostRun], None]
) -> None:
    """Run `action` for each host, at most `parallelism` at a time."""
    with ThreadPoolExecutor(max_workers=op.target.parallelism, thread_name_prefix="deploy") as pool:
        op.recorder.wait_for([pool.submit(action, run) for run in runs])


def execute(op: OperationContext, hosts: Iterable[HostSpec]) -> DeploymentOutcome:
    started = datetime.now(UTC)
    runs = [HostRun(host=host, layout=op.target.layout_for(host, op.name)) for host in hosts]

    def guarded(phase: Callable[[HostRun], None]) -> Callable[[HostRun], None]:
        def action(run: HostRun) -> None:
            try:
                phase(run)
            except StepFailed as error:
                run.failure = error.detail

        return action

    try:
        in_parallel(op, runs, guarded(lambda run: preflight_host(op, run)))
        if not any(run.failure for run in runs):
            claim_hosts(op, runs)
        if not any(run.failure for run in runs):
            in_parallel(op, runs, guarded(lambda run: prepare_host(op, run)))
        return finish(op, runs, started)
    finally:
        for run in runs:
            if run.connection is not None:
                close_quietly(run.connection)


def finish(op: OperationContext, runs: list[HostRun], started: datetime) -> DeploymentOutcome:
    failed = [run for run in runs if run.failure]
    shas = {run.target_sha256 for run in runs}
    if not failed and len(shas) != 1:
        for run in runs:
            run.failure = f"hosts disagree on the version to install: {sorted(map(str, shas))}"
        failed = runs
    if failed:
        cleanable = [run for run in runs if not run.hands_off]
        in_parallel(op, cleanable, lambda run: clean_host(op, run, keep_new=None))
        return outcome(op, runs, started, "failed", first_failure(failed), untouched=True)

    onnx_sha256 = shas.pop()
    assert onnx_sha256 is not None
    abort = threading.Event()

    def switch(run: HostRun) -> None:
        if abort.is_set():
            run.failure = "not switched: another host failed"
            return
        try:
            switch_host(op, run, onnx_sha256)
        except StepFailed as error:
            run.failure = error.detail
            abort.set()

    in_parallel(op, runs, switch)
    if not abort.is_set():
        in_parallel(op, runs, lambda run: clean_host(op, run, keep_new=onnx_sha256))
        return outcome(op, runs, started, "succeeded", "", onnx_sha256=onnx_sha256)

    reason = first_failure([run for run in runs if run.swapped and run.failure] or runs)
    restored: dict[str, bool] = {}

    def undo(run: HostRun) -> None:
        if run.swapped:
            restored[run.label] = restore_host(op, run)

    in_parallel(op, runs, undo)
    in_parallel(op, runs, lambda run: clean_host(op, run, keep_new=None))
    if all(restored.values()):
        return outcome(
            op, runs, started, "rolled_back", reason, onnx_sha256=onnx_sha256, restored=restored
        )
    broken = sorted(label for label, ok in restored.items() if not ok)
    # Not "rolled_back": those hosts do not run a healthy engine on the previous version.
    return outcome(
        op,
        runs,
        started,
        "needs_attention",
        f"{reason}; rollback FAILED on {', '.join(broken)}: no healthy engine on the "
        "previous version there",
        onnx_sha256=onnx_sha256,
        restored=restored,
        needs_attention=True,
    )


def first_failure(runs: list[HostRun]) -> str:
    for run in runs:
        if run.failure:
            return f"{run.label}: {run.failure}"
    return "unknown failure"


def outcome(
    op: OperationContext,
    runs: list[HostRun],
    started: datetime,
    status: OutcomeStatus,
    reason: str,
    *,
    onnx_sha256: str | None = None,
    untouched: bool = False,
    restored: Mapping[str, bool] | None = None,
    needs_attention: bool = False,
) -> DeploymentOutcome:
    restored = restored or {}
    hosts: dict[str, HostOutcome] = {}
    for run in runs:
        if status == "succeeded":
            result: HostResult = "succeeded"
            live = onnx_sha256
        elif untouched or not run.swapped:
            result, live = "untouched", run.previous.live_sha256 if run.previous else None
        elif restored.get(run.label):
            result, live = "rolled_back", run.previous_sha256
        else:
            result, live = "rollback_failed", None
        hosts[run.label] = HostOutcome(
            host=run.label,
            result=result,
            previous_sha256=run.previous_sha256,
            live_sha256=live,
            reason=run.failure or "",
            log_tail=run.log_tail,
        )
    compatibility = {run.label: run.compatibility for run in runs if run.compatibility}
    return DeploymentOutcome(
        deployment_id=op.deployment_id,
        target=op.target.name,
        operation=op.kind,
        status=status,
        onnx_sha256=onnx_sha256 or next((r.target_sha256 for r in runs if r.target_sha256), None),
        reason=reason,
        steps=list(op.recorder.records),
        hosts=hosts,
        started_at=started,
        finished_at=datetime.now(UTC),
        compatibility=compatibility,
        needs_attention=needs_attention,
    )


def controller_failure(
    op: OperationContext, hosts: Iterable[HostSpec], reason: str
) -> DeploymentOutcome:
    now = datetime.now(UTC)
    runs = [HostRun(host=host, layout=op.target.layout_for(host, op.name)) for host in hosts]
    return outcome(op, runs, now, "failed", reason, untouched=True)


# --------------------------------------------------------------------------- public API


def deploy(
    target: TargetSpec,
    artifact: ArtifactSpec,
    deployment_id: str,
    on_step: StepCallback | None = None,
    *,
    connect: Connect = open_connection,
    operation: OperationKind = "deploy",
    audit_anchor: str | None = None,
    claim_hosts: ClaimHosts | None = None,
) -> DeploymentOutcome:
    """Install `artifact` on every host of `target`, or leave the target as it was.
    `audit_anchor` (the registry's audit chain head) is written to every host."""
    steps.check_deployment_id(deployment_id)
    recorder = Recorder(on_step)
    op = OperationContext(
        kind=operation,
        target=target,
        name=artifact.name,
        deployment_id=deployment_id,
        recorder=recorder,
        connect=connect,
        prepare=prepare_upload(artifact),
        needed_bytes=3 * (artifact.onnx_path.stat().st_size if artifact.onnx_path.exists() else 0),
        audit_anchor=audit_anchor,
        claim_hosts=claim_hosts,
    )
    try:
        recorder.run(
            "verify_local",
            CONTROLLER,
            lambda: verify_local_files(artifact),
            describe=f"local files match the registry's sha256 for {artifact.label}",
        )
    except StepFailed as error:
        return controller_failure(op, target.hosts, error.detail)
    return execute(op, target.hosts)


def verify_local_files(artifact: ArtifactSpec) -> None:
    for path, expected in (
        (artifact.onnx_path, artifact.onnx_sha256),
        (artifact.metadata_path, artifact.metadata_sha256),
    ):
        if not path.is_file():
            raise StepFailed(f"{path} does not exist")
        actual = file_sha256(path)
        if actual != expected:
            raise StepFailed(f"{path}: sha256 {actual} differs from the registry's {expected}")


def rollback(
    target: TargetSpec,
    *,
    name: str,
    deployment_id: str,
    on_step: StepCallback | None = None,
    to_artifact: ArtifactSpec | None = None,
    to_sha256: str | None = None,
    connect: Connect = open_connection,
    audit_anchor: str | None = None,
    claim_hosts: ClaimHosts | None = None,
) -> DeploymentOutcome:
    """Go back to the previous version (the hosts' `.backup`), to a version kept on the
    hosts (`to_sha256`), or to registry files (`to_artifact`), with the deploy's checks."""
    if to_artifact is not None:
        return deploy(
            target,
            to_artifact,
            deployment_id,
            on_step,
            connect=connect,
            operation="rollback",
            audit_anchor=audit_anchor,
            claim_hosts=claim_hosts,
        )
    steps.check_deployment_id(deployment_id)
    op = OperationContext(
        kind="rollback",
        target=target,
        name=name,
        deployment_id=deployment_id,
        recorder=Recorder(on_step),
        connect=connect,
        prepare=prepare_from_host(to_sha256),
        audit_anchor=audit_anchor,
        claim_hosts=claim_hosts,
    )
    return execute(op, target.hosts)


def read_status(
    target: TargetSpec, *, name: str, connect: Connect = open_connection
) -> dict[str, HostStatusReport]:
    """Every host's live sha256 (from the engine's status file) and model files on disk."""
    reports: dict[str, HostStatusReport] = {}

    def read(host: HostSpec) -> None:
        try:
            connection = connect(target, host)
        except HostConnectionError as error:
            reports[host.label] = HostStatusReport(host.label, None, str(error))
            return
        try:
            state = steps.read_host_state(connection, target.layout_for(host, name), name)
            reports[host.label] = HostStatusReport(host.label, state)
        except (StepFailed, HostConnectionError) as error:
            reports[host.label] = HostStatusReport(host.label, None, str(error))
        finally:
            close_quietly(connection)

    with ThreadPoolExecutor(max_workers=target.parallelism) as pool:
        list(pool.map(read, target.hosts))
    return {host.label: reports[host.label] for host in target.hosts}


def reconcile(
    target: TargetSpec,
    *,
    name: str,
    deployment_id: str,
    expected_new_sha: str,
    previous_sha: str | None,
    on_step: StepCallback | None = None,
    connect: Connect = open_connection,
    swapped_on: Collection[str] = (),
    audit_anchor: str | None = None,
) -> ReconcileOutcome:
    """Finish honestly a deployment whose worker died, from what the hosts really hold.

    `swapped_on` names the hosts where the deployment is on record as having begun its
    swap: the new version took effect there, whatever the host shows now.

    - every host serves the new version: `succeeded` (the new version kept, leftovers
      removed);
    - every host serves the previous version: `failed` if no host ever swapped (it
      never took effect), `rolled_back` if one did (the killed worker's rollback had
      already brought the previous version back);
    - anything else (files swapped but not restarted, a split target, a half swap, a
      rollback cut short): the previous version is restored, restarted and checked on
      those hosts: `rolled_back`, or `needs_attention` if that restore failed.
    """
    steps.check_deployment_id(deployment_id)
    recorder = Recorder(on_step)
    op = OperationContext(
        kind="rollback",
        target=target,
        name=name,
        deployment_id=deployment_id,
        recorder=recorder,
        connect=connect,
        prepare=prepare_from_host(previous_sha),
        audit_anchor=audit_anchor,
    )
    runs = [HostRun(host=host, layout=target.layout_for(host, name)) for host in target.hosts]
    states: dict[str, HostState] = {}

    def read(run: HostRun) -> None:
        try:
            states[run.label] = op.step(
                "reconcile_read",
                run,
                lambda: steps.read_host_state(op.connection(run), run.layout, name),
                describe=lambda s: (
                    f"files {s.onnx_sha256 or 'none'}, engine serves {s.live_sha256 or 'nothing'}"
                ),
                data_of=lambda s: s.to_dict(),
            )
        except StepFailed as error:
            run.failure = error.detail

    try:
        in_parallel(op, runs, read)
        return settle(op, runs, states, expected_new_sha, previous_sha, swapped_on)
    finally:
        for run in runs:
            if run.connection is not None:
                close_quietly(run.connection)


def settle(
    op: OperationContext,
    runs: list[HostRun],
    states: Mapping[str, HostState],
    new_sha: str,
    previous_sha: str | None,
    swapped_on: Collection[str] = (),
) -> ReconcileOutcome:
    host_states = {label: state.to_dict() for label, state in states.items()}
    unreachable = [run.label for run in runs if run.label not in states]
    if unreachable:
        return ReconcileOutcome(
            "needs_attention",
            f"cannot read {', '.join(unreachable)}: state unknown",
            host_states,
            op.recorder.records,
            needs_attention=True,
        )
    for run in runs:
        run.candidate = steps.candidate_dir_for(run.layout, op.deployment_id)
    if all(states[run.label].serves(new_sha) for run in runs):
        in_parallel(
            op, runs, lambda run: clean_reconciled(op, run, keep_new=new_sha, kept=previous_sha)
        )
        return ReconcileOutcome(
            "succeeded", "every host serves the new version", host_states, op.recorder.records
        )
    to_restore = [run for run in runs if not states[run.label].serves(previous_sha)]
    swapped = [run.label for run in runs if run.label in swapped_on]
    if not to_restore and swapped:
        # The new version took effect and was undone before the worker died: calling
        # that "failed, never went live" would hide a production change from the record.
        in_parallel(op, runs, lambda run: clean_reconciled(op, run))
        return ReconcileOutcome(
            "rolled_back",
            f"the new version was swapped in on {', '.join(swapped)} and the previous one "
            "is live again on every host",
            host_states,
            op.recorder.records,
        )
    if not to_restore:
        in_parallel(op, runs, lambda run: clean_reconciled(op, run))
        return ReconcileOutcome(
            "failed",
            "the new version never went live; every host still serves the previous one",
            host_states,
            op.recorder.records,
        )
    restored: dict[str, bool] = {}

    def undo(run: HostRun) -> None:
        state = states[run.label]
        # restore_host expects the "previous" state: the previous sha with whatever
        # metadata that version had (unknown here, so only the onnx sha is checked).
        run.previous = HostState(
            host=state.host,
            onnx_sha256=previous_sha,
            metadata_sha256=None,
            metadata_onnx_sha256=None,
            metadata_version=None,
            expected_sha256=None,
            backup_onnx_sha256=state.backup_onnx_sha256,
            backup_metadata_sha256=state.backup_metadata_sha256,
            status=state.status,
        )
        restored[run.label] = restore_host(op, run)

    in_parallel(op, to_restore, undo)
    in_parallel(op, runs, lambda run: clean_reconciled(op, run))
    labels = ", ".join(run.label for run in to_restore)
    if all(restored.values()):
        return ReconcileOutcome(
            "rolled_back",
            f"previous version restored and live again on {labels}",
            host_states,
            op.recorder.records,
        )
    broken = ", ".join(label for label, ok in restored.items() if not ok)
    return ReconcileOutcome(
        "needs_attention",
        f"restoring the previous version FAILED on {broken}",
        host_states,
        op.recorder.records,
        needs_attention=True,
    )


def clean_reconciled(
    op: OperationContext, run: HostRun, *, keep_new: str | None = None, kept: str | None = None
) -> None:
    """What a killed worker left: the upload folder and temporary files. After a success
    the new version is kept (and old ones pruned, never `kept`, the previous one) exactly
    as a finished deploy keeps it."""

    def clean(connection: HostConnection) -> str:
        steps.remove_stray_incoming(connection, run.layout)
        return steps.cleanup(
            connection,
            run.layout,
            candidate=run.candidate,
            staged=None,
            keep_new=(op.name, keep_new) if keep_new else None,
            keep_versions=op.target.keep_versions,
            protect={sha for sha in (keep_new, kept, run.previous_sha256) if sha},
            timeout=op.target.command_timeout,
            audit_anchor=op.audit_anchor,
        )

    with contextlib.suppress(StepFailed):
        op.step(
            "cleanup",
            run,
            lambda: on_fresh_connection_if_failed(op, run, clean),
            describe=lambda text: text,
        )
