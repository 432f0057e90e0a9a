"""Login throttling, and registering a model trained elsewhere through the admin's upload form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from models_registry.models import ModelVersion
from tests.registry.conftest import make_user, write_artifact_dir

LOGIN = "/admin/login/?next=/admin/"


def try_login(client: Client, username: str, password: str, **headers: Any) -> int:
    response = client.post(LOGIN, {"username": username, "password": password}, **headers)
    return response.status_code


@pytest.mark.django_db
def test_failed_logins_lock_the_user_even_from_other_addresses(settings: Any) -> None:
    make_user("mallory_target")
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        try_login(client, "mallory_target", "wrong", REMOTE_ADDR=f"10.0.0.{n}")
    # The right password from a fresh address is refused now: the user is locked.
    assert try_login(Client(), "mallory_target", "pw-mallory_target", REMOTE_ADDR="10.9.9.9") == 429


@pytest.mark.django_db
def test_forwarded_for_header_does_not_dodge_the_address_lock(settings: Any) -> None:
    make_user("victim_one")
    make_user("victim_two")
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        # A new user name and a new forged X-Forwarded-For each time, same real address.
        try_login(
            client,
            f"spray{n}",
            "wrong",
            REMOTE_ADDR="192.0.2.7",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )
    status = try_login(
        client,
        "victim_one",
        "pw-victim_one",
        REMOTE_ADDR="192.0.2.7",
        HTTP_X_FORWARDED_FOR="203.0.113.1",
    )
    assert status == 429
    # Another real address is not affected.
    assert try_login(Client(), "victim_two", "pw-victim_two", REMOTE_ADDR="192.0.2.8") == 302


def upload_form(folder: Path, name: str, *, onnx_name: str | None = None) -> dict[str, Any]:
    return {
        "onnx_file": SimpleUploadedFile(
            onnx_name or f"{name}.onnx", (folder / f"{name}.onnx").read_bytes()
        ),
        "metadata_file": SimpleUploadedFile(
            f"{name}_metadata.json", (folder / f"{name}_metadata.json").read_bytes()
        ),
    }


@pytest.mark.django_db
def test_upload_registers_under_names_from_the_metadata(
    engineer: Any, tmp_path: Path, settings: Any
) -> None:
    folder = write_artifact_dir(tmp_path / "elsewhere", name="btcusdt_price")
    client = Client()
    client.force_login(engineer)
    response = client.post(
        reverse("admin:models_registry_register"),
        upload_form(folder, "btcusdt_price", onnx_name="../../x.onnx"),
        follow=True,
    )
    assert response.status_code == 200
    version = ModelVersion.objects.get()
    assert version.source == "registered" and version.created_by == engineer
    stored = Path(settings.MEDIA_ROOT) / version.artifact_dir
    assert sorted(p.name for p in stored.iterdir())[:2] == [
        "btcusdt_price.onnx",
        "btcusdt_price_metadata.json",
    ]
    assert not (Path(settings.MEDIA_ROOT).parent / "x.onnx").exists()


@pytest.mark.django_db
def test_upload_of_something_that_is_not_onnx_is_refused(engineer: Any, tmp_path: Path) -> None:
    folder = write_artifact_dir(tmp_path / "elsewhere", name="btcusdt_price")
    (folder / "btcusdt_price.onnx").write_bytes(b"MZ this is not a model")
    metadata = json.loads((folder / "btcusdt_price_metadata.json").read_text())
    import hashlib

    metadata["onnx_sha256"] = hashlib.sha256(b"MZ this is not a model").hexdigest()
    (folder / "btcusdt_price_metadata.json").write_text(json.dumps(metadata))
    client = Client()
    client.force_login(engineer)
    response = client.post(
        reverse("admin:models_registry_register"), upload_form(folder, "btcusdt_price"), follow=True
    )
    assert "registration refused" in response.text.lower()  # the admin capitalises messages
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_upload_needs_the_register_permission(approver: Any, tmp_path: Path) -> None:
    folder = write_artifact_dir(tmp_path / "elsewhere", name="btcusdt_price")
    client = Client()
    client.force_login(approver)
    response = client.post(
        reverse("admin:models_registry_register"), upload_form(folder, "btcusdt_price")
    )
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()
