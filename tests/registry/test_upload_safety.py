"""Names from outside are never paths (#26, finding 4).

The class: a file name, file or folder that comes from outside (the admin's upload form,
a folder given to register_model) makes the registry write outside its temporary folder
or its store, read a file it was not offered, keep a file after refusing, or answer 500.
Named members first, then Hypothesis over generated names, metadata and folder trees.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from models_registry.models import ModelVersion, RegistryError
from models_registry.safe_files import MAX_NAME_LENGTH, UnsafeInput, safe_name
from models_registry.services.model_versions import model_version_register
from tests.registry.conftest import write_artifact_dir

pytestmark = pytest.mark.django_db

REGISTER = "admin:models_registry_register"
PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary folder, deep inside tmp_path, so an escape by `../` lands
    where the test can see it."""
    folder = tmp_path / "sandbox" / "a" / "b" / "tmp"
    folder.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def client_of(engineer: Any) -> Client:
    client = Client()
    client.force_login(engineer)
    return client


def snapshot(root: Path, *, skip: Path) -> set[str]:
    """Every path under root (symlinks not followed) except the store and the test's own
    source folders ("src", "trees", "secret")."""
    skipped = (skip, root / "src", root / "trees", root / "secret")
    found = set()
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if any(here == s or s in here.parents for s in skipped):
            continue
        found.update(os.path.join(current, name) for name in dirs + files)
    return found - {str(s) for s in skipped}


@pytest.fixture
def nothing_outside(tmp_path: Path, settings: Any, sandbox: Path) -> Iterator[None]:
    """Nothing is written outside the temporary folder and the store: not in tmp_path,
    not at `/` (where an absolute symbol pointed the plot when the web ran as root)."""
    store = Path(settings.MEDIA_ROOT)
    before, root_before = snapshot(tmp_path, skip=store), set(os.listdir("/"))
    yield
    after = snapshot(tmp_path, skip=store)
    assert after - before == set(), sorted(after - before)
    assert set(os.listdir("/")) - root_before == set()
    assert list(sandbox.iterdir()) == [], "a temporary folder was left behind"


def upload(
    client: Client, metadata: dict[str, Any] | bytes, onnx: bytes, plot: bytes | None
) -> Any:
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    form: dict[str, Any] = {
        "onnx_file": SimpleUploadedFile("model.onnx", onnx),
        "metadata_file": SimpleUploadedFile("metadata.json", raw),
    }
    if plot is not None:
        form["plot_file"] = SimpleUploadedFile("plot.png", plot)
    return client.post(reverse(REGISTER), form)


def valid_parts(folder: Path) -> tuple[dict[str, Any], bytes]:
    artifacts = write_artifact_dir(folder, name="btcusdt_price", plot=False)
    metadata = json.loads((artifacts / "btcusdt_price_metadata.json").read_text())
    return metadata, (artifacts / "btcusdt_price.onnx").read_bytes()


def refusal_line(response: Any) -> str:
    text = response.content.decode()
    start = text.lower().index("registration refused")
    return text[start : text.index("<", start)]


# --------------------------------------------------------------------------- named members


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("symbol", "BTC\x00USDT"),
        ("symbol", "/etc"),
        ("symbol", "../../../../x"),
        ("symbol", "..\\x"),
        ("symbol", "btcusdt/../.."),
        ("symbol", ["BTCUSDT"]),
        ("symbol", "B" * 10_000),
        ("name", "../btcusdt_price"),
        ("name", "btcusdt_price\x00"),
    ],
)
def test_a_hostile_name_in_the_metadata_is_a_400_and_nothing_is_written(
    field: str, value: Any, client_of: Client, tmp_path: Path, nothing_outside: None
) -> None:
    metadata, onnx = valid_parts(tmp_path / "src")
    metadata[field] = value
    response = upload(client_of, metadata, onnx, PNG + b"plot")
    assert response.status_code == 400
    line = refusal_line(response)
    assert "\n" not in line and len(line) < 400, line
    assert not ModelVersion.objects.exists()


def test_deeply_nested_metadata_is_a_400(
    client_of: Client, tmp_path: Path, nothing_outside: None
) -> None:
    metadata, onnx = valid_parts(tmp_path / "src")
    text = json.dumps(metadata)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = upload(client_of, text.encode(), onnx, None)
    assert response.status_code == 400
    assert "nests deeper" in refusal_line(response)


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
def test_metadata_strings_the_database_cannot_hold_are_a_400(
    bad: str, client_of: Client, tmp_path: Path, nothing_outside: None
) -> None:
    metadata, onnx = valid_parts(tmp_path / "src")
    metadata["note"] = f"a{bad}b"
    response = upload(client_of, json.dumps(metadata).encode(), onnx, None)
    assert response.status_code == 400
    assert not ModelVersion.objects.exists()


def test_a_plot_above_its_cap_is_a_400_and_stays_nowhere(
    client_of: Client, tmp_path: Path, settings: Any, nothing_outside: None
) -> None:
    settings.TRADEBOT_MAX_PLOT_BYTES = 64 * 1024
    metadata, onnx = valid_parts(tmp_path / "src")
    response = upload(client_of, metadata, onnx, PNG + b"\0" * (64 * 1024))
    assert response.status_code == 400
    assert "above the limit of 65536 bytes for a plot file" in refusal_line(response)
    assert not ModelVersion.objects.exists()
    assert not any(Path(settings.MEDIA_ROOT).rglob("*.png"))


def test_a_missing_file_field_is_a_400(client_of: Client) -> None:
    response = client_of.post(reverse(REGISTER), {})
    assert response.status_code == 400


def test_a_good_upload_still_registers(
    client_of: Client, tmp_path: Path, settings: Any, nothing_outside: None
) -> None:
    metadata, onnx = valid_parts(tmp_path / "src")
    response = upload(client_of, metadata, onnx, PNG + b"plot")
    assert response.status_code == 302
    version = ModelVersion.objects.get()
    assert version.plot_file == "BTCUSDT_price_training.png"


# --------------------------------------------------------------------------- folders


def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret" / "id_ed25519"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(PNG + b"-----BEGIN OPENSSH PRIVATE KEY----- secret")
    secret.chmod(0o600)
    return secret


def store_holds(settings: Any, content: bytes) -> bool:
    return any(
        path.is_file() and content in path.read_bytes()
        for path in Path(settings.MEDIA_ROOT).rglob("*")
    )


@pytest.mark.parametrize(
    "member",
    ["symlinked plot", "symlinked metadata", "fifo", "link in a subfolder", "hard-linked plot"],
)
def test_register_model_refuses_links_and_special_files_anywhere(
    member: str, tmp_path: Path, settings: Any
) -> None:
    folder = write_artifact_dir(tmp_path / "offered", name="btcusdt_price", plot=False)
    secret = secret_file(tmp_path)
    if member == "symlinked plot":
        (folder / "BTCUSDT_price_training.png").symlink_to(secret)
    elif member == "symlinked metadata":
        real = folder / "btcusdt_price_metadata.json"
        moved = tmp_path / "elsewhere.json"
        real.rename(moved)
        real.symlink_to(moved)
    elif member == "fifo":
        os.mkfifo(folder / "BTCUSDT_price_training.png")
    elif member == "hard-linked plot":
        os.link(secret, folder / "BTCUSDT_price_training.png")
    else:
        (folder / "extra" / "deeper").mkdir(parents=True)
        (folder / "extra" / "deeper" / "key").symlink_to(secret)
    with pytest.raises(CommandError, match=r"symbolic link|not a regular file|hard links"):
        call_command("register_model", str(folder))
    assert not ModelVersion.objects.exists()
    assert not store_holds(settings, b"PRIVATE KEY")
    assert not any(Path(settings.MEDIA_ROOT).glob("models/.incoming-*"))


# --------------------------------------------------------------------------- safe_name


@given(st.lists(st.text(max_size=30), min_size=1, max_size=4), st.sampled_from(["", ".png"]))
def test_safe_name_never_yields_a_path(parts: list[str], suffix: str) -> None:
    try:
        name = safe_name(*parts, suffix=suffix)
    except UnsafeInput:
        return
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and ".." not in name
    assert len(name) <= MAX_NAME_LENGTH
    assert Path(name).name == name and os.path.basename(name) == name


# --------------------------------------------------------------------------- Hypothesis

HOSTILE = st.sampled_from(
    ["../", "..", "/", "/tmp", "\x00", "a/b", "..\\", "~", ".hidden", "BTCUSDT", "btcusdt",
     "é", " ", "\n", "*", "$HOME", "%2e%2e"]
)  # fmt: skip
NAME_TEXT = st.one_of(HOSTILE, st.text(max_size=24), st.lists(HOSTILE, max_size=4).map("".join))
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
JSON_TREE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


# The fields the registry reads from metadata.
METADATA_FIELDS = [
    "interval", "data", "out_of_sample_from", "onnx", "market_conditions", "search",
    "metrics", "onnx_sha256", "allow_short_history", "kind", "window", "splits",
    "hold_out", "version",
]  # fmt: skip


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    symbol=st.one_of(NAME_TEXT, st.integers(), st.none()),
    name=st.one_of(st.just("btcusdt_price"), NAME_TEXT),
    extra=JSON_TREE,
    depth=st.sampled_from([0, 5, 40, 3000]),
    plot=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_no_generated_upload_gives_a_500_or_writes_outside(
    symbol: Any,
    name: Any,
    extra: Any,
    depth: int,
    plot: bytes | None,
    client_of: Client,
    tmp_path: Path,
    settings: Any,
    sandbox: Path,
) -> None:
    store = Path(settings.MEDIA_ROOT)
    before, root_before = snapshot(tmp_path, skip=store), set(os.listdir("/"))
    count = ModelVersion.objects.count()
    metadata, onnx = valid_parts(tmp_path / "src" / hashlib.sha256(os.urandom(8)).hexdigest())
    metadata.update(symbol=symbol, name=name, extra=extra)
    text = json.dumps(metadata)
    if depth:
        text = text[:-1] + ', "nest": ' + "[" * depth + "]" * depth + "}"
    response = upload(client_of, text.encode(), onnx, plot)

    assert response.status_code in (302, 400), response.status_code
    registered = ModelVersion.objects.count() - count
    assert registered == (1 if response.status_code == 302 else 0)
    assert snapshot(tmp_path, skip=store) - before == set()
    assert set(os.listdir("/")) - root_before == set()
    assert list(sandbox.iterdir()) == []
    assert not list(store.glob("models/.incoming-*"))


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fields=st.dictionaries(st.sampled_from(METADATA_FIELDS), JSON_TREE, min_size=1, max_size=3))
def test_no_generated_metadata_field_gives_a_500(
    fields: dict[str, Any], client_of: Client, tmp_path: Path, settings: Any, sandbox: Path
) -> None:
    """A valid name and symbol, and any JSON at the fields the registry reads."""
    count = ModelVersion.objects.count()
    metadata, onnx = valid_parts(tmp_path / "src" / hashlib.sha256(os.urandom(8)).hexdigest())
    metadata.update(fields)
    response = upload(client_of, metadata, onnx, None)
    assert response.status_code in (302, 400), (response.status_code, fields)
    assert ModelVersion.objects.count() - count == (1 if response.status_code == 302 else 0)
    assert list(sandbox.iterdir()) == []
    assert not list(Path(settings.MEDIA_ROOT).glob("models/.incoming-*"))


ENTRY = st.sampled_from(["file", "dir", "symlink-secret", "symlink-dir", "fifo", "hardlink"])


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tree=st.lists(
        st.tuples(
            st.lists(st.sampled_from(["extra", "sub", "deep"]), max_size=2),
            st.sampled_from(["BTCUSDT_price_training.png", "notes.txt", "x.json", "a.png"]),
            ENTRY,
        ),
        max_size=4,
    )
)
def test_no_generated_folder_tree_leaks_a_file_into_the_store(
    tree: list[tuple[list[str], str, str]], tmp_path: Path, settings: Any, engineer: Any
) -> None:
    secret = secret_file(tmp_path)
    folder = write_artifact_dir(
        tmp_path / "trees" / hashlib.sha256(os.urandom(8)).hexdigest(),
        name="btcusdt_price",
        plot=False,
    )
    hostile = False
    for subdirs, filename, entry in tree:
        parent = folder.joinpath(*subdirs)
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / filename
        if path.exists() or path.is_symlink():
            continue
        if entry == "file":
            path.write_bytes(PNG + b"plot")
        elif entry == "dir":
            path.mkdir()
        elif entry == "symlink-secret":
            path.symlink_to(secret)
            hostile = True
        elif entry == "symlink-dir":
            path.symlink_to(secret.parent, target_is_directory=True)
            hostile = True
        elif entry == "hardlink":
            os.link(secret, path)
            # A hard link at the top, where the registry reads, is refused; one deeper in
            # the tree is never read.
            hostile = hostile or path.parent == folder
        else:
            os.mkfifo(path)
            hostile = True
    count = ModelVersion.objects.count()
    try:
        model_version_register(source_dir=folder, registered_by=engineer)
    except RegistryError as exc:
        assert "\n" not in str(exc)
        assert ModelVersion.objects.count() == count
    else:
        assert not hostile, "a folder with a link or special file was registered"
    assert not store_holds(settings, b"PRIVATE KEY")
    assert not list(Path(settings.MEDIA_ROOT).glob("models/.incoming-*"))
    for path in Path(settings.MEDIA_ROOT).rglob("*"):
        assert not path.is_symlink()
