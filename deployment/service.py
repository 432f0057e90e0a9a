"""Stopping a target's engine on every host (deployment.engine_stop).

The registry stops a staged engine when its version is replaced, rejected or fails its
forward paper run. Each host is stopped through the deploy connection with the target's
`stop_command` (`sudo systemctl stop {service}` by default); one host that cannot be
reached, or whose command fails, is reported in its own result and never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployment.connection import HostConnectionError, open_connection
from deployment.targets import TargetSpec


@dataclass(frozen=True)
class EngineStopResult:
    """What stopping the engine on one host gave: `ok`, the command, and why not."""

    host: str
    ok: bool
    command: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "ok": self.ok, "command": self.command, "detail": self.detail}


def engine_stop(spec: TargetSpec, *, timeout: float | None = None) -> list[EngineStopResult]:
    """Run the target's stop command on each of its hosts; one result per host, in order.

    Never raises for one host: an unreachable host, a refused command or a timeout is a
    result with `ok` False and the reason in `detail`. Stopping an engine that is not
    running is a success (systemctl stop is idempotent; the test hosts' script too)."""
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
            outcome = connection.run(command, timeout=limit)
        except HostConnectionError as exc:
            results.append(EngineStopResult(host.label, False, command, f"connection lost: {exc}"))
            continue
        finally:
            connection.close()
        if outcome.ok:
            detail = "stopped"
        elif outcome.timed_out:
            detail = f"timed out after {limit:g} s"
        else:
            output = (outcome.stderr or outcome.stdout).strip().splitlines()
            detail = f"exit {outcome.exit_code}: {output[-1] if output else 'no output'}"
        results.append(EngineStopResult(host.label, outcome.ok, command, detail))
    return results
