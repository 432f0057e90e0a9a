"""File names and files that come from outside: uploads and folders offered for registration.

One rule for every name built from untrusted input (`safe_name`): a short run of ASCII
letters, digits, `_` and `-` per part, joined by `_`, with a fixed suffix. So no name can
hold a separator, `..`, a NUL, a leading dot or an absolute path, and none is longer than
`MAX_NAME_LENGTH`. One rule for what a folder may hold (`scan_folder`): regular files and
folders only, anywhere in it; a symbolic link, FIFO, socket or device is refused (a link
could point at any file this process can read). Files are copied with `copy_regular`,
which refuses a link or special file even if one was swapped in after the scan, and
each artifact kind has a size cap.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from models_registry.models import RegistryError

MAX_NAME_LENGTH = 100
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*")
_SUFFIX = re.compile(r"(?:\.[a-z0-9]{1,8}){0,2}")

# JSON nesting deeper than this is not metadata: it is refused before it reaches the
# hashing, the database (jsonb) or Python's recursion limit.
MAX_JSON_DEPTH = 32

DEFAULT_MAX_PLOT_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_METADATA_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ONNX_BYTES = 200 * 1024 * 1024


class UnsafeInput(RegistryError):
    """A name, file or folder from outside breaks one of the rules above."""


def shown(value: Any, limit: int = 40) -> str:
    """A value for a one-line error: repr (so NUL and newlines show escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_name(*parts: Any, suffix: str = "") -> str:
    """The one way a file name is built from untrusted parts: each part a run of
    `[A-Za-z0-9_-]` (no dot, separator, NUL or leading punctuation), joined with `_`,
    then the caller's fixed `suffix`; at most MAX_NAME_LENGTH characters in all."""
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"suffix {suffix!r} is not a plain extension")  # a programming error
    for part in parts:
        if not isinstance(part, str) or not _PART.fullmatch(part):
            raise UnsafeInput(
                f"{shown(part)} cannot be part of a file name (letters, digits, _ and - only)."
            )
    name = "_".join(parts) + suffix
    if not parts or len(name) > MAX_NAME_LENGTH:
        raise UnsafeInput(f"the file name {shown(name)} is longer than {MAX_NAME_LENGTH}.")
    return name


# --------------------------------------------------------------------------- sizes


_CAPS = {
    "onnx": ("TRADEBOT_MAX_UPLOAD_BYTES", DEFAULT_MAX_ONNX_BYTES),
    "metadata": ("TRADEBOT_MAX_METADATA_BYTES", DEFAULT_MAX_METADATA_BYTES),
    "plot": ("TRADEBOT_MAX_PLOT_BYTES", DEFAULT_MAX_PLOT_BYTES),
}


def max_bytes(kind: str) -> int:
    """The size cap of one artifact kind: onnx, metadata or plot (settings override)."""
    setting, default = _CAPS[kind]
    return int(getattr(settings, setting, default))


def kind_of(path: Path) -> str:
    if path.name.endswith("_metadata.json"):
        return "metadata"
    return {".onnx": "onnx", ".png": "plot"}.get(path.suffix, "metadata")


def refuse_oversized(size: int, *, kind: str, what: str) -> None:
    limit = max_bytes(kind)
    if size > limit:
        raise UnsafeInput(
            f"{what} is {size} bytes, above the limit of {limit} bytes for a {kind} file "
            f"(setting {_CAPS[kind][0]})."
        )


# --------------------------------------------------------------------------- JSON


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and objects (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def parse_metadata(raw: bytes | str, *, source: str) -> dict[str, Any]:
    """Metadata JSON from outside: valid UTF-8 JSON, an object, nesting at most MAX_JSON_DEPTH."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise UnsafeInput(f"{source} nests deeper than {MAX_JSON_DEPTH} levels.") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnsafeInput(f"{source} is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise UnsafeInput(f"{source} must hold a JSON object.")
    if json_depth(value) > MAX_JSON_DEPTH:
        raise UnsafeInput(f"{source} nests deeper than {MAX_JSON_DEPTH} levels.")
    shape = metadata_shape_problem(value)
    if shape is not None:
        raise UnsafeInput(f"{source}: {shape}.")
    bad = first_unstorable_string(value)
    if bad is not None:
        raise UnsafeInput(
            f"{source} holds {shown(bad)}: a NUL or an unpaired surrogate cannot be stored."
        )
    return value


def first_unstorable_string(value: Any) -> str | None:
    """A key or string PostgreSQL's jsonb (NUL) or UTF-8 (lone surrogates) cannot hold."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and ("\x00" in item or _SURROGATE.search(item)):
            return item
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- folders


def _walk(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under `folder`, lstat'ed (links are not followed), depth first."""
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                path = Path(entry.path)
                info = entry.stat(follow_symlinks=False)
                yield path, info
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)


def scan_folder(folder: Path) -> list[Path]:
    """The regular files anywhere in `folder`; refuses a link, FIFO, socket or device
    anywhere in it, and a file above its kind's size cap (before anything is read)."""
    try:
        top = os.lstat(folder)
    except OSError as exc:
        raise UnsafeInput(f"{folder} cannot be read: {exc.strerror}.") from exc
    if not stat.S_ISDIR(top.st_mode):
        raise UnsafeInput(f"{folder} is not a folder.")
    files = []
    try:
        for path, info in _walk(folder):
            where = path.relative_to(folder)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeInput(
                    f"{shown(str(where), 80)} is a symbolic link; offer the file itself."
                )
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeInput(f"{shown(str(where), 80)} is not a regular file.")
            if path.parent == folder:
                refuse_oversized(info.st_size, kind=kind_of(path), what=path.name)
                if info.st_nlink > 1:
                    # A second name for some other file (a hard link): the same leak as a
                    # symbolic link, for a file the offerer may not be able to read.
                    raise UnsafeInput(f"{shown(path.name, 80)} has other hard links; offer a copy.")
            files.append(path)
    except OSError as exc:
        raise UnsafeInput(f"{folder} cannot be read: {exc.strerror}.") from exc
    return files


def copy_regular(source: Path, destination: Path, *, kind: str) -> None:
    """Copy a regular file without following a link at its name (O_NOFOLLOW) and without
    blocking on a FIFO (O_NONBLOCK), with its kind's size cap; `destination` is new."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(source, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeInput(f"{source.name} is a symbolic link; offer the file itself.") from exc
        raise UnsafeInput(f"{source.name} cannot be read: {exc.strerror}.") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeInput(f"{source.name} is not a regular file.")
        if info.st_nlink > 1:
            raise UnsafeInput(f"{source.name} has other hard links; offer a copy.")
        refuse_oversized(info.st_size, kind=kind, what=source.name)
        limit = max_bytes(kind)
        written = 0
        with destination.open("xb") as out:
            while block := handle.read(1 << 20):
                written += len(block)
                if written > limit:  # grew after the check
                    raise UnsafeInput(f"{source.name} grew above the {kind} limit while copied.")
                out.write(block)


# --------------------------------------------------------------------------- metadata shape

# The JSON type of each metadata field the registry and the engine read (absent or null
# is always allowed): anything else is refused here with the field's name, instead of
# crashing the first reader that calls .get() on a list (#26).
_OBJECT, _STRING, _LIST = dict, str, list
METADATA_SHAPE: dict[str, tuple[type, ...]] = {
    "name": (_STRING,),
    "symbol": (_STRING,),
    "interval": (_STRING,),
    "kind": (_STRING,),
    "onnx_sha256": (_STRING,),
    "out_of_sample_from": (_STRING,),
    "allow_short_history": (bool,),
    "version": (int,),
    "window": (int,),
    "onnx": (_OBJECT,),
    "data": (_OBJECT,),
    "splits": (_OBJECT,),
    "hold_out": (_OBJECT,),
    "market_conditions": (_OBJECT,),
    "metrics": (_OBJECT,),
    "search": (_OBJECT,),
    "parity": (_OBJECT,),
}
NESTED_SHAPE: dict[tuple[str, str], tuple[type, ...]] = {
    ("data", "start"): (_STRING,),
    ("data", "end"): (_STRING,),
    ("data", "content_hash"): (_STRING,),
    ("search", "trials"): (_LIST,),
    ("search", "plot"): (_STRING,),
    ("onnx", "input_name"): (_STRING,),
    ("onnx", "output_name"): (_STRING,),
}
_NAMES = {
    dict: "an object",
    str: "a string",
    list: "a list",
    bool: "true or false",
    int: "an integer",
}


def _shape_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) and bool not in allowed:
        return False  # JSON true is not a number
    return isinstance(value, allowed)


def metadata_shape_problem(metadata: dict[str, Any]) -> str | None:
    """The first field whose JSON type is not the one its readers expect, as a sentence."""
    for field, allowed in METADATA_SHAPE.items():
        if not _shape_ok(metadata.get(field), allowed):
            return f"metadata field {field!r} must be {_NAMES[allowed[0]]}"
    for (outer, inner), allowed in NESTED_SHAPE.items():
        container = metadata.get(outer)
        if isinstance(container, dict) and not _shape_ok(container.get(inner), allowed):
            return f"metadata field '{outer}.{inner}' must be {_NAMES[allowed[0]]}"
    splits = metadata.get("splits")
    for split_name, split in (splits or {}).items():
        if split is not None and not isinstance(split, dict):
            return f"metadata field 'splits.{split_name}' must be an object"
        for bar, value in (split or {}).items():
            if not _shape_ok(value, (_STRING, int, float)):
                return f"metadata field 'splits.{split_name}.{bar}' must be a date or number"
    return None
