"""Creating versions from artifact folders, and the write-once artifact store."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from models_registry.models import AuditEvent, ModelState, ModelVersion
from models_registry.services.model_versions import ArtifactError, model_version_create
from tests.registry.conftest import tiny_onnx_bytes

pytestmark = pytest.mark.django_db


def store_contents(media_root: Path) -> list[Path]:
    root = media_root / "models"
    return sorted(root.rglob("*")) if root.exists() else []


def test_a_folder_becomes_a_trained_version_with_read_only_files(
    artifact_dir: Any, engineer: Any, media_root: Path
) -> None:
    folder = artifact_dir()
    version = model_version_create(source_dir=folder, created_by=engineer)
    assert (version.name, version.version, version.symbol, version.kind) == (
        "btcusdt_price",
        1,
        "BTCUSDT",
        "price",
    )
    assert version.state == ModelState.TRAINED
    assert version.created_by_id == engineer.pk
    stored = media_root / "models" / version.onnx_sha256
    assert version.artifact_dir == f"models/{version.onnx_sha256}"
    names = sorted(p.name for p in stored.iterdir())
    assert names == sorted(
        ["btcusdt_price.onnx", "btcusdt_price_metadata.json", "BTCUSDT_price_training.png"]
    )
    for path in stored.iterdir():
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert (stored / "btcusdt_price.onnx").read_bytes() == (
        folder / "btcusdt_price.onnx"
    ).read_bytes()
    # The registry's number is stamped into the stored metadata (the source keeps null).
    assert json.loads((stored / "btcusdt_price_metadata.json").read_text())["version"] == 1
    assert version.metadata["version"] == 1
    assert version.out_of_sample_from is not None
    event = AuditEvent.objects.get(event_type="model_version_trained", object_id=str(version.pk))
    assert event.actor_id == engineer.pk


def test_version_numbers_count_up_per_name(artifact_dir: Any, engineer: Any) -> None:
    first = model_version_create(source_dir=artifact_dir(), created_by=engineer)
    second = model_version_create(source_dir=artifact_dir(), created_by=engineer)
    other_name = model_version_create(
        source_dir=artifact_dir(name="ethusdt_sentiment"), created_by=engineer
    )
    assert (first.version, second.version, other_name.version) == (1, 2, 1)
    assert other_name.kind == "sentiment"


def test_the_same_origin_key_gives_one_version(artifact_dir: Any, engineer: Any) -> None:
    folder = artifact_dir()
    first = model_version_create(source_dir=folder, created_by=engineer, origin_key="task-1")
    again = model_version_create(source_dir=folder, created_by=engineer, origin_key="task-1")
    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="model_version_trained").count() == 1


def test_the_same_file_twice_is_refused(artifact_dir: Any, engineer: Any) -> None:
    data = tiny_onnx_bytes(7.0)
    first = model_version_create(source_dir=artifact_dir(onnx_bytes=data), created_by=engineer)
    with pytest.raises(ArtifactError, match="already registered as btcusdt_price v1"):
        model_version_create(source_dir=artifact_dir(onnx_bytes=data), created_by=engineer)
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [first.pk]


def _break_sha(folder: Path) -> None:
    path = folder / "btcusdt_price_metadata.json"
    metadata = json.loads(path.read_text())
    path.write_text(json.dumps({**metadata, "onnx_sha256": "a" * 64}))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_break_sha, "but its metadata says"),
        (lambda folder: (folder / "btcusdt_price.onnx").unlink(), "has no btcusdt_price.onnx"),
        (lambda folder: (folder / "btcusdt_price_metadata.json").unlink(), "exactly one"),
        (lambda folder: (folder / "btcusdt_price_metadata.json").write_text("{"), "not valid JSON"),
        (
            lambda folder: (folder / "btcusdt_price_metadata.json").write_text('{"x": NaN}'),
            "NaN",
        ),
    ],
    ids=["sha-mismatch", "missing-onnx", "missing-metadata", "bad-json", "nan"],
)
def test_bad_folders_are_refused_leaving_nothing(
    artifact_dir: Any, engineer: Any, media_root: Path, spoil: Any, message: str
) -> None:
    folder = artifact_dir()
    spoil(folder)
    with pytest.raises(ArtifactError, match=message):
        model_version_create(source_dir=folder, created_by=engineer)
    assert not ModelVersion.objects.exists()
    assert store_contents(media_root) == []
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "../../x"}, "must look like"),
        ({"name": "btcusdt_price/../../evil"}, "must look like"),
        ({"symbol": "ETHUSDT"}, "does not match name"),
        ({"interval": "1h; rm -rf /"}, "interval"),
        ({"out_of_sample_from": "last tuesday"}, "out_of_sample_from"),
    ],
    ids=["traversal", "traversal-2", "symbol-mismatch", "bad-interval", "bad-oos-date"],
)
def test_bad_metadata_is_refused_leaving_nothing(
    artifact_dir: Any, engineer: Any, media_root: Path, fields: dict[str, str], message: str
) -> None:
    folder = artifact_dir()
    path = folder / "btcusdt_price_metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    with pytest.raises(ArtifactError, match=message):
        model_version_create(source_dir=folder, created_by=engineer)
    assert not ModelVersion.objects.exists()
    assert store_contents(media_root) == []
    assert not (media_root.parent / "x").exists()


def test_a_symlinked_model_file_is_refused(
    artifact_dir: Any, engineer: Any, tmp_path: Path
) -> None:
    folder = artifact_dir()
    real = tmp_path / "elsewhere.onnx"
    (folder / "btcusdt_price.onnx").rename(real)
    (folder / "btcusdt_price.onnx").symlink_to(real)
    with pytest.raises(ArtifactError, match="symbolic link"):
        model_version_create(source_dir=folder, created_by=engineer)
    assert not ModelVersion.objects.exists()
