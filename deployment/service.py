"""Stopping a target's engine on every host (deployment.engine_stop).

The registry stops a staged engine when its version is replaced, rejected or fails its
forward paper run. Each host is stopped through the deploy connection with the target's
`stop_command` (`sudo systemctl stop {service}` by default); one host that cannot be
reached, or whose command fails, is reported in its own result and never hides the others.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from deployment.connection import (
    CommandResult,
    HostConnection,
    HostConnectionError,
    open_connection,
)
from deployment.journals import JOURNAL_SUBDIR
from deployment.targets import HostSpec, TargetSpec

# Paper journals only: a live journal holds a real position and is never set aside.
ARCHIVE_PAPER_JOURNALS = (
    "stamp=$(date -u +%Y%m%dT%H%M%SZ); for f in {folder}/*-paper.jsonl; do "
    '[ -e "$f" ] || continue; to="${{f%.jsonl}}.$stamp.jsonl"; '
    'mv -n "$f" "$to" && basename "$to" || exit 1; done'
)


@dataclass(frozen=True)
class EngineStopResult:
    """What stopping the engine on one host gave: `ok`, the command, and why not."""

    host: str
    ok: bool
    command: str
    detail: str
    archived: tuple[str, ...] = ()  # paper journals set aside (archive_journals=True)

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "ok": self.ok,
            "command": self.command,
            "detail": self.detail,
            "archived": list(self.archived),
        }


def engine_stop(
    spec: TargetSpec, *, timeout: float | None = None, archive_journals: bool = False
) -> list[EngineStopResult]:
    """Run the target's stop command on each of its hosts; one result per host, in order.

    Never raises for one host: an unreachable host, a refused command or a timeout is a
    result with `ok` False and the reason in `detail`. Stopping an engine that is not
    running is a success (systemctl stop is idempotent; the test hosts' script too).

    `archive_journals=True` then renames each stopped host's paper journals
    (`<symbol>-paper.jsonl` to `<symbol>-paper.<UTC stamp>.jsonl`, the engine's archive
    naming, which `journals_fetch` skips), so the next version staged there starts its
    forward run flat, not from the replaced one's position. Live journals are never moved.
    """
    limit = spec.command_timeout if timeout is None else timeout
    results: list[EngineStopResult] = []
    for host in spec.hosts:
        command = spec.layout_for(host).stop_command
        try:
            connection = open_connection(spec, host)
        except HostConnectionError as exc:
            results.append(EngineStopResult(host.label, False, command, f"unreachable: {exc}"))
            continue
        try:
            results.append(_stop_host(connection, spec, host, command, limit, archive_journals))
        except HostConnectionError as exc:
            results.append(EngineStopResult(host.label, False, command, f"connection lost: {exc}"))
        finally:
            connection.close()
    return results


def _stop_host(
    connection: HostConnection,
    spec: TargetSpec,
    host: HostSpec,
    command: str,
    limit: float,
    archive_journals: bool,
) -> EngineStopResult:
    outcome = connection.run(command, timeout=limit)
    if not outcome.ok:
        return EngineStopResult(host.label, False, command, _failure(outcome, limit))
    if not archive_journals:
        return EngineStopResult(host.label, True, command, "stopped")
    install_root = (host.install_root or spec.install_root).rstrip("/")
    folder = shlex.quote(f"{install_root}/{JOURNAL_SUBDIR}")
    moved = connection.run(ARCHIVE_PAPER_JOURNALS.format(folder=folder), timeout=limit)
    if not moved.ok:
        return EngineStopResult(
            host.label, False, command, f"stopped; journals not archived: {_failure(moved, limit)}"
        )
    archived = tuple(moved.stdout.split())
    return EngineStopResult(host.label, True, command, "stopped", archived)


def _failure(outcome: CommandResult, limit: float) -> str:
    if outcome.timed_out:
        return f"timed out after {limit:g} s"
    lines = (outcome.stderr or outcome.stdout).strip().splitlines()
    return f"exit {outcome.exit_code}: {lines[-1] if lines else 'no output'}"
