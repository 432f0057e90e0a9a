"""deployment.journals: the engine's journals fetched from a target's hosts, for monitoring.

Only live journal files are fetched (not rotated archives or other files); a host without a
journal folder gives nothing; an unreachable host is one entry naming why, and the other
hosts are still read."""

from __future__ import annotations

from pathlib import Path

from deployment.journals import journals_fetch
from deployment.targets import HostSpec, TargetSpec
from tests.deployment.hosts import free_port


def _journal_folder(install_root: Path) -> Path:
    folder = install_root / "var" / "journal"
    folder.mkdir(parents=True)
    return folder


def test_only_live_journals_are_fetched_host_by_host(tmp_path: Path) -> None:
    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    folder = _journal_folder(first)
    (folder / "btcusdt-live.jsonl").write_bytes(b'{"type": "session_start"}\n')
    (folder / "btcusdt-live.20240101T000000Z.jsonl").write_text("a rotated archive\n")
    (folder / "notes.txt").write_text("not a journal\n")
    (_journal_folder(second) / "ethusdt-paper.jsonl").write_bytes(b"paper\n")
    empty.mkdir()
    spec = TargetSpec(
        name="production-local",
        local=True,
        hosts=(
            HostSpec("localhost", name="one", install_root=str(first)),
            HostSpec("localhost", name="two", install_root=str(second)),
            HostSpec("localhost", name="three", install_root=str(empty)),
        ),
    )
    into = tmp_path / "into"
    into.mkdir()

    fetched = journals_fetch(spec, into)

    assert [(f.host, f.file, f.error) for f in fetched] == [
        ("one", "btcusdt-live.jsonl", None),
        ("two", "ethusdt-paper.jsonl", None),
    ]
    assert fetched[0].local is not None and fetched[0].local.parent == into
    assert fetched[0].local.read_bytes() == b'{"type": "session_start"}\n'
    assert fetched[1].local is not None and fetched[1].local.read_bytes() == b"paper\n"


def test_an_unreachable_host_is_reported_and_does_not_hide_the_others(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    spec = TargetSpec(
        name="production-ssh",
        hosts=(HostSpec("127.0.0.1", port=free_port(), name="down"),),
        known_hosts_path=str(known_hosts),
        connect_timeout=2,
    )

    fetched = journals_fetch(spec, tmp_path)

    assert len(fetched) == 1
    entry = fetched[0]
    assert (entry.host, entry.file, entry.local) == ("down", None, None)
    assert entry.error is not None and entry.error.startswith("down: ")
