"""The engine's journals on the hosts of a target, fetched through the deploy connection.

This module only lists and downloads the journal files; reading them and comparing them
with a backtest is the registry's business (``models_registry.services.monitoring.live``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from deployment.connection import HostConnection, HostConnectionError, open_connection
from deployment.targets import TargetSpec

# The engine keeps one journal per symbol and mode (engine.live.journal.journal_path);
# rotated archives carry a timestamp in their name and are not the live record.
JOURNAL_NAME = re.compile(r"^(?P<symbol>[a-z0-9]+)-(?P<mode>live|paper)\.jsonl$")
JOURNAL_SUBDIR = "var/journal"


@dataclass(frozen=True)
class FetchedJournal:
    """One journal file of one host, downloaded to `local`; or why not (`error`).

    `file` is None when the host itself could not be reached."""

    host: str
    file: str | None
    local: Path | None = None
    error: str | None = None


def _journal_dir(install_root: str) -> str:
    return f"{install_root.rstrip('/')}/{JOURNAL_SUBDIR}"


def _list_journals(connection: HostConnection, folder: str, timeout: float) -> list[str]:
    result = connection.run(f"ls -1 {shlex.quote(folder)}", timeout=timeout)
    if not result.ok:
        return []  # no journal folder: the engine has not run there yet
    return sorted(n for n in result.stdout.split() if JOURNAL_NAME.match(n))


def journals_fetch(spec: TargetSpec, into: Path) -> list[FetchedJournal]:
    """Every live journal file of every host of `spec`, downloaded into the folder `into`.

    An unreachable host or a file that cannot be downloaded is reported in its entry, not
    raised, so one host does not hide the others."""
    fetched: list[FetchedJournal] = []
    for host in spec.hosts:
        folder = _journal_dir(host.install_root or spec.install_root)
        try:
            connection = open_connection(spec, host)
        except HostConnectionError as exc:
            fetched.append(FetchedJournal(host.label, None, error=str(exc)))
            continue
        try:
            for name in _list_journals(connection, folder, spec.command_timeout):
                local = into / f"{len(fetched)}-{name}"
                try:
                    connection.get(f"{folder}/{name}", local)
                except HostConnectionError as exc:
                    fetched.append(FetchedJournal(host.label, name, error=str(exc)))
                    continue
                fetched.append(FetchedJournal(host.label, name, local))
        finally:
            connection.close()
    return fetched
