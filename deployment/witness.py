"""Audit chain witnesses on the hosts: write the registry's signed chain head, read it back.

Each host of a target keeps the latest head it was given (``audit-anchor.json``) and every
head it was ever given (``audit-anchor.log``, appended). They live off the control host,
so emptying or re-signing the control host's own anchor file does not erase them. This
module only moves lines to and from hosts; what they mean is the registry's business
(``models_registry.services.audit_witness``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deployment import steps
from deployment.connection import HostConnection, HostConnectionError, open_connection
from deployment.runner import close_quietly
from deployment.steps import StepFailed, q
from deployment.targets import HostSpec, TargetSpec

Connect = Callable[[TargetSpec, HostSpec], HostConnection]
# The log grows by one line per deploy and per scheduled write; the newest lines are the
# ones that can show truncation (a head above the database's), so a bounded tail is read.
LOG_LINES_READ = 2000


@dataclass(frozen=True)
class WitnessCopy:
    """What one host holds: its latest head and its log of heads (text), or why not."""

    target: str
    host: str
    latest: str = ""
    log: str = ""
    present: bool = False
    error: str | None = None

    @property
    def source(self) -> str:
        return f"witness {self.target}/{self.host}"


def witness_read(target: TargetSpec, *, connect: Connect = open_connection) -> list[WitnessCopy]:
    """Every host's copy of the chain head, read in parallel (one round trip per host)."""

    def read(host: HostSpec) -> WitnessCopy:
        layout = target.layout_for(host)
        parts = {
            "present": f"test -f {q(steps.anchor_path(layout))} && echo yes",
            "latest": f"cat {q(steps.anchor_path(layout))}",
            "log": f"tail -n {LOG_LINES_READ} {q(steps.anchor_log_path(layout))}",
        }
        try:
            connection = connect(target, host)
        except HostConnectionError as error:
            return WitnessCopy(target.name, host.label, error=str(error))
        try:
            sections = steps.run_sections(connection, parts, what="reading the audit witness")
        except (StepFailed, HostConnectionError) as error:
            return WitnessCopy(target.name, host.label, error=str(error))
        finally:
            close_quietly(connection)
        return WitnessCopy(
            target.name,
            host.label,
            latest=sections.get("latest", ""),
            log=sections.get("log", ""),
            present=sections.get("present", "").strip() == "yes",
        )

    with ThreadPoolExecutor(max_workers=target.parallelism) as pool:
        return list(pool.map(read, target.hosts))


def witness_write(
    target: TargetSpec, anchor: str, *, connect: Connect = open_connection
) -> dict[str, str | None]:
    """Give every host the chain head `anchor` (one signed line); per host, None or the error."""

    def write(host: HostSpec) -> tuple[str, str | None]:
        script = steps.write_anchor_script(target.layout_for(host), anchor)
        try:
            connection = connect(target, host)
        except HostConnectionError as error:
            return host.label, str(error)
        try:
            steps.run_checked(
                connection, script, timeout=steps.QUICK_COMMAND_TIMEOUT, what="writing the witness"
            )
        except (StepFailed, HostConnectionError) as error:
            return host.label, str(error)
        finally:
            close_quietly(connection)
        return host.label, None

    with ThreadPoolExecutor(max_workers=target.parallelism) as pool:
        return dict(pool.map(write, target.hosts))
