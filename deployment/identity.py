"""A host is the machine, not how its address is written.

Two kinds of knowledge, used at two moments:

- **Spelling** (known when a target is created, no connection): an address and an
  install root normalised so that the spellings of one machine and folder compare
  equal: letter case, a trailing dot, every loopback address (127.0.0.0/8, ``::1``,
  ``localhost``) as one machine, IPv4-mapped IPv6 as IPv4, IPv6 in any of its
  forms, and a root with ``.``, ``..``, ``//`` or a trailing slash. What spelling
  cannot know (a symlinked root, a second name or port of the same sshd, a local
  target and an SSH target on one folder) the host itself says at preflight.
- **Identity** (reported by the host at every preflight): its SSH host key
  fingerprint, the real path (``realpath``) of its install root, and a host id file
  under that root that the first deploy writes (a random uuid). Two hosts with the
  same host id, or the same host key and real root, are one machine and root.

Plain Python, no Django: the registry stores identities and locks on their keys.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import posixpath
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST_ID_FILENAME = ".tradebot-host-id"
LOOPBACK = "loopback"
LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
RESOLVE_TIMEOUT_SECONDS = 2.0


class HostClaimRefused(Exception):
    """A deploy may not touch these hosts now: another target owns one of them, two hosts
    of the target are one machine, or another deploy is on the machine. One sentence."""


# --------------------------------------------------------------------------- spelling


def canonical_address(address: str) -> str:
    """One spelling per machine for an address as written (no name resolution)."""
    text = address.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # an IPv6 zone id names the interface, not the machine
    if text in LOCALHOST_NAMES:
        return LOOPBACK
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    return canonical_ip(ip)


def canonical_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    if ip.is_loopback:
        return LOOPBACK
    return ip.compressed


def canonical_root(root: str) -> str:
    """An absolute path with `.`, `..`, repeated and trailing slashes resolved as text
    (POSIX keeps a leading `//`; no host here gives it a meaning, so it is `/`)."""
    text = root.strip() or "/"
    normal = posixpath.normpath(text)
    while normal.startswith("//"):
        normal = normal[1:]
    return normal


def local_real_root(root: str) -> str:
    """A local target's install root as this machine resolves it (symlinks followed)."""
    return canonical_root(str(Path(canonical_root(root)).resolve()))


def resolved_addresses(address: str, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> frozenset[str]:
    """The canonical addresses a name resolves to now (empty if it does not, in time).

    getaddrinfo has no timeout of its own: it runs in a daemon thread and is given up
    on after `timeout`, so a slow resolver never holds a form save.
    """
    written = canonical_address(address)
    try:
        ipaddress.ip_address(written)
        return frozenset({written})
    except ValueError:
        if written == LOOPBACK:
            return frozenset({LOOPBACK})
    found: list[frozenset[str]] = []

    def resolve() -> None:
        try:
            infos = socket.getaddrinfo(written, None)
        except (OSError, UnicodeError):
            return
        found.append(frozenset(canonical_address(str(info[4][0])) for info in infos))

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    return found[0] if found else frozenset()


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class HostIdentity:
    """What a host says it is at preflight."""

    fingerprint: str  # "SHA256:..." of the SSH host key, "local:<machine>" for a local target
    real_root: str
    host_id: str

    @property
    def machine_key(self) -> str:
        return "machine:" + _digest(self.fingerprint)

    @property
    def root_key(self) -> str:
        return "root:" + _digest(f"{self.fingerprint}\n{self.real_root}")

    @property
    def host_id_key(self) -> str:
        return "hostid:" + _digest(self.host_id)

    def same_place(self, other: HostIdentity) -> bool:
        """One machine and install root: the same host id file, or the same host key
        and real root (the id file may have been removed or copied)."""
        return (bool(self.host_id) and self.host_id == other.host_id) or (
            self.fingerprint == other.fingerprint and self.real_root == other.real_root
        )

    def lock_keys(self) -> tuple[str, ...]:
        """The keys a deploy holds while it touches this host: the machine and the root."""
        keys = [self.machine_key, self.root_key]
        if self.host_id:
            keys.append(self.host_id_key)
        return tuple(sorted(keys))

    def describe(self) -> str:
        return f"host key {self.fingerprint}, root {self.real_root}, host id {self.host_id}"

    def to_dict(self) -> dict[str, str]:
        return {
            "fingerprint": self.fingerprint,
            "real_root": self.real_root,
            "host_id": self.host_id,
        }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key_fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (`ssh-keygen -lf` prints it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")


def local_fingerprint() -> str:
    """This machine as a local target sees it: its machine id (the hostname if none)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return f"local:{text}"
    return f"local:{socket.gethostname()}"


def new_host_id() -> str:
    return str(uuid.uuid4())


def same_place_pairs(identities: Mapping[str, HostIdentity]) -> list[tuple[str, str]]:
    """Pairs of host labels (of one target) that are one machine and root."""
    labels = sorted(identities)
    return [
        (a, b)
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if identities[a].same_place(identities[b])
    ]


def all_lock_keys(identities: Iterable[HostIdentity]) -> list[str]:
    return sorted({key for identity in identities for key in identity.lock_keys()})
