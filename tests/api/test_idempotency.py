"""Idempotency-Key: a registration or a run request repeated with the same key is done once,
even when the repeats race; another request under the same key is refused; a refused
upload leaves nothing in the store."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from models_registry.models import (
    AuditEvent,
    IdempotencyRecord,
    ModelState,
    ModelVersion,
    ValidationRun,
)
from tests.api.conftest import Api, store_entries, upload_files
from tests.registry.conftest import write_artifact_dir


def test_registration_repeated_with_one_key_creates_one_version(
    api_for: Any, engineer: Any, tmp_path: Path, media_root: Path
) -> None:
    api: Api = api_for(engineer)
    files = upload_files(write_artifact_dir(tmp_path / "job", name="btcusdt_price"))
    key = {"Idempotency-Key": "train-job-41"}

    first = api.post("versions/", files=files, headers=key)
    assert first.status_code == 201, first.text
    again = api.post("versions/", files=files, headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert ModelVersion.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="model_version_registered").count() == 1
    version = ModelVersion.objects.get()
    assert version.created_by == engineer and version.source == "registered"
    # The test folder's lineage cannot be verified against a store (issue 25): it is judged
    # only on bars after its registration, and the API says so.
    lineage = first.json()["lineage"]
    assert version.out_of_sample_from is not None
    assert version.out_of_sample_from >= version.created_at.replace(minute=0, second=0)
    assert lineage["out_of_sample_from"].startswith(version.out_of_sample_from.strftime("%Y-%m-%d"))

    # Without a key a repeat is a new request: the registry refuses the same file twice.
    plain = api.post("versions/", files=files)
    assert plain.status_code == 422 and "already registered" in plain.json()["detail"]

    # The same key with another request: refused, nothing created.
    other = upload_files(write_artifact_dir(tmp_path / "job2", name="btcusdt_price"))
    reused = api.post("versions/", files=other, headers=key)
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused/")
    assert ModelVersion.objects.count() == 1
    # Keys are per user: another user's same key is another request.
    assert IdempotencyRecord.objects.filter(key="train-job-41").count() == 1


def test_concurrent_repeats_with_one_key_create_one_version(
    api_for: Any, engineer: Any, tmp_path: Path
) -> None:
    api: Api = api_for(engineer)
    files = upload_files(write_artifact_dir(tmp_path / "job", name="btcusdt_price"))

    def send(_: int) -> tuple[int, str, str]:
        response = Api(api.base, api.token).post(
            "versions/", files=files, headers={"Idempotency-Key": "race"}
        )
        return response.status_code, response.headers.get("Idempotent-Replayed", ""), response.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(send, range(4)))
    assert [status for status, _, _ in results] == [201] * 4, results
    assert sorted(replayed for _, replayed, _ in results) == ["", "true", "true", "true"]
    assert len({json.loads(text)["id"] for _, _, text in results}) == 1
    assert ModelVersion.objects.count() == 1


def test_validation_request_repeated_with_one_key_creates_one_run(
    api_for: Any, engineer: Any, version_factory: Any
) -> None:
    api: Api = api_for(engineer)
    version = version_factory(ModelState.TRAINED)
    key = {"Idempotency-Key": "validate-41"}
    first = api.post(f"versions/{version.pk}/validate/", json={}, headers=key)
    second = api.post(f"versions/{version.pk}/validate/", json={}, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert ValidationRun.objects.filter(model_version=version).count() == 1
    assert AuditEvent.objects.filter(event_type="validation_requested").count() == 1
    assert (
        first.json()["verdict"] == "pending" and first.json()["requested_by"] == engineer.username
    )


def test_a_refused_upload_leaves_nothing_in_the_store_and_is_replayed_as_refused(
    api_for: Any, engineer: Any, tmp_path: Path, media_root: Path
) -> None:
    api: Api = api_for(engineer)
    folder = write_artifact_dir(tmp_path / "job", name="btcusdt_price")
    (folder / "btcusdt_price.onnx").write_bytes(b"MZ this is not a model")
    metadata = json.loads((folder / "btcusdt_price_metadata.json").read_text())
    metadata["onnx_sha256"] = hashlib.sha256(b"MZ this is not a model").hexdigest()
    (folder / "btcusdt_price_metadata.json").write_text(json.dumps(metadata))
    before = store_entries(media_root)

    key = {"Idempotency-Key": "bad-file"}
    refused = api.post("versions/", files=upload_files(folder), headers=key)
    assert refused.status_code == 422, refused.text
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/registration-refused/")
    assert store_entries(media_root) == before
    assert not ModelVersion.objects.exists()
    replay = api.post("versions/", files=upload_files(folder), headers=key)
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"

    bad_json = upload_files(folder)
    bad_json["metadata_file"] = ("m.json", b"{not json")
    response = api.post("versions/", files=bad_json)
    assert response.status_code == 422 and "not valid JSON" in response.json()["detail"]
    assert store_entries(media_root) == before


def test_a_malformed_key_is_refused(api_for: Any, engineer: Any, version_factory: Any) -> None:
    api: Api = api_for(engineer)
    version = version_factory(ModelState.TRAINED)
    response = api.post(
        f"versions/{version.pk}/validate/", json={}, headers={"Idempotency-Key": "x" * 300}
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["errors"]
    assert not ValidationRun.objects.exists()


def _refusals() -> dict[str, Any]:
    """Each kind of bad upload, as a change to a good job folder: (how to spoil it, expected)."""

    def not_onnx(folder: Path) -> None:
        (folder / "btcusdt_price.onnx").write_bytes(b"MZ not a model")
        _rehash(folder)

    def path_in_name(folder: Path) -> None:
        _edit_metadata(folder, name="../../etc/btcusdt_price")

    def sha_mismatch(folder: Path) -> None:
        _edit_metadata(folder, onnx_sha256="0" * 64)

    def wrong_input_name(folder: Path) -> None:
        _edit_metadata(folder, onnx={"input_name": "x", "output_name": "prediction"})

    def not_an_object(folder: Path) -> None:
        (folder / "btcusdt_price_metadata.json").write_text("[1, 2, 3]")

    return {
        "not onnx": not_onnx,
        "path in name": path_in_name,
        "sha mismatch": sha_mismatch,
        "wrong input name": wrong_input_name,
        "metadata not an object": not_an_object,
    }


def _edit_metadata(folder: Path, **changes: Any) -> None:
    path = folder / "btcusdt_price_metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _rehash(folder: Path) -> None:
    digest = hashlib.sha256((folder / "btcusdt_price.onnx").read_bytes()).hexdigest()
    _edit_metadata(folder, onnx_sha256=digest)


def test_every_kind_of_refused_upload_is_a_422_and_leaves_nothing(
    api_for: Any, engineer: Any, tmp_path: Path, media_root: Path, settings: Any
) -> None:
    api: Api = api_for(engineer)
    before = store_entries(media_root)
    events_before = AuditEvent.objects.count()
    for kind, spoil in _refusals().items():
        folder = write_artifact_dir(tmp_path / kind.replace(" ", "-"), name="btcusdt_price")
        spoil(folder)
        response = api.post("versions/", files=upload_files(folder))
        assert response.status_code == 422, (kind, response.text)
        assert response.json()["type"].endswith("/registration-refused/"), kind
    settings.TRADEBOT_MAX_UPLOAD_BYTES = 100
    big = api.post("versions/", files=upload_files(write_artifact_dir(tmp_path / "big")))
    assert big.status_code == 422 and "limit" in big.json()["detail"]
    assert store_entries(media_root) == before
    assert not ModelVersion.objects.exists()
    # Nothing but the refusals themselves: one audited refusal per refused upload (issue 24:
    # the service records a refused registration, whoever asked).
    written = AuditEvent.objects.order_by("id")[events_before:]
    assert [e.event_type for e in written] == ["model_version_register_refused"] * (
        len(_refusals()) + 1
    )
